"""Datasets: checksummed IDX loading (MNIST, Fashion-MNIST), scikit-learn sets, blobs."""

from advlab.data.datasets import DATASETS, Dataset, load_dataset
from advlab.data.idx import IDXError, load_idx, parse_idx
from advlab.data.sources import DataNotFoundError, cache_dir

__all__ = [
    "DATASETS",
    "DataNotFoundError",
    "Dataset",
    "IDXError",
    "cache_dir",
    "load_dataset",
    "load_idx",
    "parse_idx",
]
