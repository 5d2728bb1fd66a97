"""Faces in, as one uint8 array: the FER2013 readers (Kaggle CSV, course CSV, image folders),
the built-in synthetic faces, `FaceDataset`, the class names, safe file reading and faces cut
from uploaded photos. Knows nothing of models."""
