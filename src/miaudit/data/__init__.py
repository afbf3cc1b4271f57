"""Datasets and membership splits.

Fashion-MNIST from its official IDX files (search path, checksums, download), scikit-learn's digits,
a user's own .npz/.csv data, and disjoint splits into target members, target non-members and the
attacker's population.
"""

from __future__ import annotations

from miaudit.data.base import Dataset
from miaudit.data.datasets import DATASETS, load_arrays, load_dataset, load_digits
from miaudit.data.fashion_mnist import (
    CLASS_NAMES,
    default_cache_dir,
    fashion_mnist_info,
    fetch_fashion_mnist,
    load_fashion_mnist,
    locate_fashion_mnist,
)
from miaudit.data.idx import read_idx, write_idx
from miaudit.data.info import FashionMNISTInfo
from miaudit.data.splits import MembershipSplit, make_split, random_halves

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "Dataset",
    "FashionMNISTInfo",
    "MembershipSplit",
    "default_cache_dir",
    "fashion_mnist_info",
    "fetch_fashion_mnist",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "make_split",
    "random_halves",
    "read_idx",
    "write_idx",
]
