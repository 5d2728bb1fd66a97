"""FER2013's seven emotions in the dataset's label order, and its image size. Only the FER2013
readers, the built-in faces and the default task (`task.FER2013`) use these."""

CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
FER2013_SIZE = 48

# Folder names used by the FER2013 image export (train/<emotion>/...).
FOLDER_NAMES = tuple(name.lower() for name in CLASSES)
