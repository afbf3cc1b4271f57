"""Datasets and membership splits.

Fashion-MNIST from its official IDX files (search path, checksums, download), scikit-learn's digits,
a user's own .npz/.csv data, and disjoint splits into target members, target non-members and the
attacker's population. For an audit of a user's own model: tables of a user's records (CSV, Parquet,
NPZ, IDX, image folders), their members and content identity.
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
from miaudit.data.membership import check_disjoint, member_mask, read_member_ids, record_digests
from miaudit.data.splits import MembershipSplit, make_split, random_halves
from miaudit.data.tables import Table, encode_labels, read_table

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "Dataset",
    "FashionMNISTInfo",
    "MembershipSplit",
    "Table",
    "check_disjoint",
    "default_cache_dir",
    "encode_labels",
    "fashion_mnist_info",
    "fetch_fashion_mnist",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "make_split",
    "member_mask",
    "random_halves",
    "read_idx",
    "read_member_ids",
    "read_table",
    "record_digests",
    "write_idx",
]
