"""The validated container every dataset loader returns.

Kept apart from the loaders so that each loader module (:mod:`miaudit.data.fashion_mnist`,
:mod:`miaudit.data.datasets`) imports it without importing the others: the data layer's imports form a
tree, ``datasets -> fashion_mnist -> base``, never a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miaudit.errors import ConfigError, DataError

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset, validated on construction.

    Parameters
    ----------
    name : str
        Short name, for example ``"fashion-mnist"``.
    X : ndarray of shape (n_samples, n_features)
        float32 features, all finite and in [0, 1].
    y : ndarray of shape (n_samples,)
        int64 labels in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes (at least 2).
    class_names : tuple of str
        One name per class, ``len(class_names) == n_classes``.
    source : str
        Where the data came from (a directory, a file, or ``"scikit-learn digits"``).

    Raises
    ------
    DataError
        If a shape, dtype, value or label is not as described above.

    Notes
    -----
    Arrays are not copied. Loaders that cache a dataset in-process (Fashion-MNIST, digits) mark its
    arrays read-only; index them (``X[idx]``) or copy them to get writable arrays.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    n_classes: int
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        X, y, where = self.X, self.y, f"dataset {self.name!r} (from {self.source})"
        if not isinstance(X, np.ndarray) or X.ndim != 2:
            got = f"ndim {X.ndim}" if isinstance(X, np.ndarray) else type(X).__name__
            raise DataError(f"{where}: X must be an ndarray of shape (n_samples, n_features), got {got}")
        if X.dtype != np.float32:
            raise DataError(f"{where}: X must have dtype float32, got {X.dtype}; convert with X.astype(np.float32)")
        if not isinstance(y, np.ndarray) or y.ndim != 1:
            got = f"ndim {y.ndim}" if isinstance(y, np.ndarray) else type(y).__name__
            raise DataError(f"{where}: y must be an ndarray of shape (n_samples,), got {got}")
        if y.dtype != np.int64:
            raise DataError(f"{where}: y must have dtype int64, got {y.dtype}; convert with y.astype(np.int64)")
        if len(X) != len(y):
            raise DataError(f"{where}: X has {len(X)} rows but y has {len(y)} labels; they must match")
        if len(y) == 0 or X.shape[1] == 0:
            raise DataError(f"{where}: empty dataset (X has shape {X.shape}); it needs records and features")
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int | np.integer):
            raise DataError(f"{where}: n_classes must be an int, got {self.n_classes!r}")
        if self.n_classes < 2:
            raise DataError(f"{where}: n_classes must be at least 2, got {self.n_classes}")
        if len(self.class_names) != self.n_classes:
            raise DataError(f"{where}: class_names has {len(self.class_names)} names but n_classes is {self.n_classes}")
        lo, hi = X.min(), X.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise DataError(f"{where}: X contains NaN or infinite values; remove or impute them")
        if lo < 0 or hi > 1:
            raise DataError(
                f"{where}: X values must lie in [0, 1], got min {lo:g} and max {hi:g}; "
                "rescale the features (for 8-bit images divide by 255)"
            )
        ylo, yhi = int(y.min()), int(y.max())
        if ylo < 0 or yhi >= self.n_classes:
            raise DataError(f"{where}: labels must lie in 0..{self.n_classes - 1}, got min {ylo} and max {yhi}")

    @property
    def n_samples(self) -> int:
        """Number of records."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features per record."""
        return int(self.X.shape[1])

    def class_counts(self) -> np.ndarray:
        """Records per class: ndarray of shape (n_classes,)."""
        return np.bincount(self.y, minlength=self.n_classes)

    def subset_classes(self, n_classes: int) -> Dataset:
        """Keep only the records of the first ``n_classes`` classes (labels ``< n_classes``).

        Parameters
        ----------
        n_classes : int
            Between 2 and ``self.n_classes``.

        Returns
        -------
        Dataset
            A new dataset (``self`` if ``n_classes == self.n_classes``); labels keep their values.

        Raises
        ------
        ConfigError
            If ``n_classes`` is not an int between 2 and ``self.n_classes``.
        """
        if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
            raise ConfigError(f"n_classes must be an int, got {n_classes!r} ({type(n_classes).__name__})")
        if not 2 <= n_classes <= self.n_classes:
            raise ConfigError(
                f"n_classes must be between 2 and {self.n_classes} for dataset {self.name!r}, got {n_classes}"
            )
        n_classes = int(n_classes)
        if n_classes == self.n_classes:
            return self
        keep = self.y < n_classes
        return Dataset(
            name=self.name,
            X=self.X[keep],
            y=self.y[keep],
            n_classes=n_classes,
            class_names=self.class_names[:n_classes],
            source=self.source,
        )
