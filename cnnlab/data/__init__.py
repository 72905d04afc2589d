"""Data sets as in-memory uint8 tensors, and whole-batch augmentation on the training device."""

from .batches import BatchLoader, Preprocess
from .datasets import DATASET_NAMES, ImageDataset, find_datasets, load_dataset

__all__ = [
    "DATASET_NAMES",
    "BatchLoader",
    "ImageDataset",
    "Preprocess",
    "find_datasets",
    "load_dataset",
]
