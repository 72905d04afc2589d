"""Data sets as in-memory uint8 tensors (or, for image folders too big for memory, streamed
from disk), and whole-batch augmentation on the training device."""

from .batches import BatchLoader, Preprocess, make_loader
from .catalog import TEST_IMAGE_SETS
from .datasets import DATASET_NAMES, ImageDataset, find_datasets, load_dataset, named_test_image
from .stream import StreamedImages, StreamLoader

__all__ = [
    "DATASET_NAMES",
    "TEST_IMAGE_SETS",
    "BatchLoader",
    "ImageDataset",
    "Preprocess",
    "StreamLoader",
    "StreamedImages",
    "find_datasets",
    "load_dataset",
    "make_loader",
    "named_test_image",
]
