"""Typed records that describe Fashion-MNIST on disk (what ``miaudit data info`` shows).

:func:`miaudit.data.fashion_mnist.fashion_mnist_info` returns a :class:`FashionMNISTInfo`; the CLI reads
its attributes (checked by mypy) and prints :meth:`FashionMNISTInfo.to_dict` for ``--json``. The records
are plain frozen dataclasses with no imports from the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClassCount", "FashionMNISTInfo", "FileInfo", "SearchedPlace"]


@dataclass(frozen=True)
class SearchedPlace:
    """One place on the search path and what was found there.

    Attributes
    ----------
    place : str
        What the place is (``"user cache"``, ``"$MIAUDIT_DATA_DIR"``, ...).
    path : str
        The directory looked at.
    found : bool
        It holds all four files.
    used : bool
        It is the first place that holds them (the one loaded).
    missing : tuple of str
        Official names of the files it lacks.
    """

    place: str
    path: str
    found: bool
    used: bool
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``missing`` as a list)."""
        return {
            "place": self.place,
            "path": self.path,
            "found": self.found,
            "used": self.used,
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class FileInfo:
    """One of the four official files as found on disk.

    Attributes
    ----------
    name : str
        Official (gzipped) name, one of :data:`~miaudit.data.fashion_mnist.FILES`.
    path : str
        The file used (gzipped or decompressed).
    size_bytes : int
        Its size on disk.
    sha256_ok : bool or None
        Its decompressed sha256 matches :data:`~miaudit.data.fashion_mnist.SHA256`; None when not checked.
    """

    name: str
    path: str
    size_bytes: int
    sha256_ok: bool | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (without ``name``, which keys it in :meth:`FashionMNISTInfo.to_dict`)."""
        return {"path": self.path, "size_bytes": self.size_bytes, "sha256_ok": self.sha256_ok}


@dataclass(frozen=True)
class ClassCount:
    """Records of one class, training and test sets pooled."""

    label: int
    name: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"label": self.label, "name": self.name, "count": self.count}


@dataclass(frozen=True)
class FashionMNISTInfo:
    """Where Fashion-MNIST was found, whether it verified and how many records each class has.

    Attributes
    ----------
    directory : str
        The directory that would be loaded.
    searched : tuple of SearchedPlace
        Every place looked at, in search order.
    files : tuple of FileInfo
        The four files, in the order of :data:`~miaudit.data.fashion_mnist.FILES`.
    n_train, n_test : int
        Records in the official training and test sets.
    records_per_class : tuple of ClassCount
        One entry per class, labels 0..9.
    checksums_ok : bool or None
        All four files verified; None when not checked.
    dataset : str
        ``"fashion-mnist"``.
    """

    directory: str
    searched: tuple[SearchedPlace, ...]
    files: tuple[FileInfo, ...]
    n_train: int
    n_test: int
    records_per_class: tuple[ClassCount, ...]
    checksums_ok: bool | None
    dataset: str = "fashion-mnist"

    @property
    def n_total(self) -> int:
        """Records in both sets together."""
        return self.n_train + self.n_test

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``miaudit data info --json``).

        Keys: ``dataset``, ``directory``, ``searched`` (list), ``files`` (keyed by official name),
        ``n_records`` (``train``, ``test``, ``total``), ``records_per_class`` (list of
        ``{"label", "name", "count"}``) and ``checksums_ok``.
        """
        return {
            "dataset": self.dataset,
            "directory": self.directory,
            "searched": [s.to_dict() for s in self.searched],
            "files": {f.name: f.to_dict() for f in self.files},
            "n_records": {"train": self.n_train, "test": self.n_test, "total": self.n_total},
            "records_per_class": [c.to_dict() for c in self.records_per_class],
            "checksums_ok": self.checksums_ok,
        }
