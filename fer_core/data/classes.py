"""The seven FER2013 emotions, in the dataset's label order."""

CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 48

# Folder names used by the FER2013 image export (train/<emotion>/...).
FOLDER_NAMES = tuple(name.lower() for name in CLASSES)
