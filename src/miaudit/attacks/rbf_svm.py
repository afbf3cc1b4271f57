"""The RBF-kernel SVM attack classifier: scikit-learn's model, fitted and scored several times faster.

:class:`RBFSVC` gives the fitted model of ``SVC(kernel="rbf", gamma="scale")`` (libsvm's solver,
the same support vectors and coefficients) and its decisions, at a fraction of the cost:

* fit: the kernel matrix is computed once by blocks of matrix products and handed to libsvm as a
  precomputed kernel (libsvm otherwise evaluates one BLAS dot product and one ``exp`` per entry,
  about half of its fitting time); libsvm rounds every kernel value to float32 in its cache either
  way, so its solver takes the same steps. Measured on 5,000 rows of shadow outputs: identical
  dual coefficients and intercepts, bit for bit.
* scoring: decision values by blocks of matrix products instead of libsvm's one kernel evaluation
  (with a ``malloc``) per (record, support vector); equal to libsvm's to about 1e-11 relative, and a
  value near enough to 0 for rounding to matter is recomputed by libsvm.

Levers measured and left out because they change the model: ``shrinking=False`` (a different
solution on 3 of 5 study-sized fits, intercepts off by up to 1e-4), float32 inputs (scikit-learn
converts them to float64 for libsvm anyway, so only the rounded inputs would differ).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from miaudit.errors import DataError, NotFittedError

__all__ = [
    "KERNEL_BUFFER_MAX_MB",
    "PRECOMPUTE_MAX_SAMPLES",
    "RBFSVC",
    "rbf_decision_values",
    "rbf_kernel_matrix",
    "reference_rbf_svm",
    "release_kernel_buffer",
    "single_threaded_blas",
]


def reference_rbf_svm(*, seed: int) -> SVC:
    """The plain scikit-learn SVM that :class:`RBFSVC` reproduces (for comparisons and benchmarks)."""
    return SVC(kernel="rbf", class_weight="balanced", gamma="scale", cache_size=1000, random_state=seed)


#: fit through a precomputed kernel matrix (float64, 8 n^2 bytes: 200 MB at 5,000 rows) up to this many rows
PRECOMPUTE_MAX_SAMPLES = 8_000
#: kernel matrices up to this size are written into one buffer kept between fits (see :func:`release_kernel_buffer`)
KERNEL_BUFFER_MAX_MB = 256
#: libsvm's cache on the precomputed path: a column costs one gather from the matrix there, and a
#: small cache was measured faster than a large one (0.19 s against 0.31 s of CPU for 5,000 rows)
_PRECOMPUTED_CACHE_MB = 10
#: a fast decision value closer to 0 than this times its error scale is recomputed by libsvm itself
_EXACT_BAND = 1e-10
#: elements of one block of kernel values (8 bytes each: 1 MiB, about one core's L2 cache)
_BLOCK_ELEMENTS = 1 << 17


def _row_blocks(n_rows: int, n_cols: int) -> list[tuple[int, int]]:
    step = max(1, _BLOCK_ELEMENTS // max(1, n_cols))
    return [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]


def _rbf_block(A: np.ndarray, sq_a: np.ndarray, B: np.ndarray, sq_b: np.ndarray, gamma: float, out: np.ndarray) -> None:
    """``out = exp(-gamma * ((|a|^2 + |b|^2) - 2 a.b))``, libsvm's order of operations, in place."""
    np.add(sq_a[:, None], sq_b[None, :], out=out)
    G = A @ B.T
    G *= 2.0
    out -= G
    out *= -gamma
    np.exp(out, out=out)


def _map_blocks(fn: Callable[[tuple[int, int]], Any], blocks: list[tuple[int, int]], n_threads: int) -> list[Any]:
    """``fn`` over row blocks on ``n_threads`` threads, BLAS single-threaded meanwhile.

    The blocks' matrix products are small (k = n_features): OpenBLAS's own threads cost more than they
    give there, many times more on a loaded machine (measured: 0.25 s against 4.7 s for a 5,000-row
    kernel matrix), so parallelism comes from the blocks instead.
    """
    with single_threaded_blas():
        if n_threads <= 1 or len(blocks) < 2:
            return [fn(b) for b in blocks]
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="miaudit-rbf") as pool:
            return list(pool.map(fn, blocks))


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while any caller is inside (several attack models may fit at once).

    The limit is process-wide: the first caller to enter sets it and the last to leave restores the
    previous setting, so overlapping callers cannot leave BLAS limited. Hold it around a whole batch
    of fits: switching OpenBLAS's threads off and on around every fit of several concurrent ones
    was measured 5x slower (per-class RBF fits on 2 cores: 11 s against 2.2 s).
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def rbf_kernel_matrix(X: np.ndarray, *, gamma: float, n_threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """The RBF kernel matrix of ``X`` with itself, computed as libsvm computes its entries.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    gamma : float
    n_threads : int
        Threads sharing the row blocks (numpy and BLAS release the GIL).
    out : ndarray of shape (n_samples, n_samples), float64, C-contiguous, optional
        Where to write the matrix (a new array without it).

    Returns
    -------
    ndarray of shape (n_samples, n_samples), float64, with exactly 1.0 on the diagonal (as libsvm's
    ``|x|^2 + |x|^2 - 2 x.x`` is exactly 0).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = len(X)
    sq = np.einsum("ij,ij->i", X, X)
    if out is None:
        out = np.empty((n, n), dtype=np.float64)
    elif out.shape != (n, n) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise DataError(f"out must be a C-contiguous float64 array of shape ({n}, {n}); got {out.dtype} {out.shape}")
    K = out

    def block(b: tuple[int, int]) -> None:
        _rbf_block(X[b[0] : b[1]], sq[b[0] : b[1]], X, sq, gamma, K[b[0] : b[1]])

    _map_blocks(block, _row_blocks(n, n), n_threads)
    np.fill_diagonal(K, 1.0)
    return K


_buffer_lock = threading.Lock()
_buffer: np.ndarray | None = None
_buffer_busy = False


@contextmanager
def _kernel_buffer(n: int) -> Iterator[np.ndarray]:
    """An (n, n) float64 array for a kernel matrix: the module's kept buffer when free and small enough.

    Fresh pages cost more than computing the kernel on a virtual machine (measured: 0.12-0.17 s of
    system time to fault in 200 MB against 0.09 s to fill it), so one buffer of up to
    :data:`KERNEL_BUFFER_MAX_MB` is kept between fits (one study fits dozens of 5,000-row SVMs);
    :func:`release_kernel_buffer` frees it. A second thread fitting at the same time gets a new array.
    """
    global _buffer, _buffer_busy
    size = n * n
    with _buffer_lock:
        reuse = not _buffer_busy and size * 8 <= KERNEL_BUFFER_MAX_MB * 2**20
        if reuse:
            _buffer_busy = True
            if _buffer is None or _buffer.size < size:
                _buffer = None  # free the smaller one first
                _buffer = np.empty(size, dtype=np.float64)
            buf = _buffer
    if not reuse:
        yield np.empty((n, n), dtype=np.float64)
        return
    try:
        yield buf[:size].reshape(n, n)
    finally:
        with _buffer_lock:
            _buffer_busy = False


def release_kernel_buffer() -> None:
    """Free the kernel-matrix buffer kept between :class:`RBFSVC` fits (a later fit makes a new one)."""
    global _buffer
    with _buffer_lock:
        if not _buffer_busy:
            _buffer = None


def rbf_decision_values(
    X: np.ndarray,
    support_vectors: np.ndarray,
    dual_coef: np.ndarray,
    intercept: float,
    *,
    gamma: float,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """An RBF SVM's decision values by blocks of matrix products, and a bound on their rounding error.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    support_vectors : ndarray of shape (n_support, n_features)
    dual_coef : ndarray of shape (n_support,)
        Signed dual coefficients (scikit-learn's ``dual_coef_[0]``).
    intercept : float
    gamma : float
    n_threads : int

    Returns
    -------
    decision : ndarray of shape (n_samples,)
        ``sum_k dual_coef[k] exp(-gamma |x - sv_k|^2) + intercept``.
    error_scale : ndarray of shape (n_samples,)
        ``sum_k |dual_coef[k]| K_k (1 + gamma (|x|^2 + |sv_k|^2)) + |intercept|``: the rounding error of
        ``decision`` (and of libsvm's own sum) is a tiny multiple of it (about ``n_support * 1e-16``).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    S = np.ascontiguousarray(support_vectors, dtype=np.float64)
    sq_x, sq_s = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", S, S)
    absc = np.abs(dual_coef)
    W = np.column_stack([dual_coef, absc * (1.0 + gamma * sq_s), absc])
    out = np.empty((len(X), 3), dtype=np.float64)

    def block(b: tuple[int, int]) -> None:
        K = np.empty((b[1] - b[0], len(S)), dtype=np.float64)
        _rbf_block(X[b[0] : b[1]], sq_x[b[0] : b[1]], S, sq_s, gamma, K)
        out[b[0] : b[1]] = K @ W

    _map_blocks(block, _row_blocks(len(X), len(S)), n_threads)
    decision = out[:, 0] + intercept
    return decision, out[:, 1] + gamma * sq_x * out[:, 2] + abs(intercept)


class RBFSVC(ClassifierMixin, BaseEstimator):
    """The RBF-kernel SVM of ``SVC(kernel="rbf", gamma="scale")``, same fitted model, fitted and scored faster.

    The model is libsvm's own, from the same solver on the same kernel values: up to
    ``precompute_max_samples`` rows the kernel matrix is computed once by blocks of matrix products
    (:func:`rbf_kernel_matrix`) and handed to libsvm as a precomputed kernel, instead of libsvm
    evaluating one dot product per entry; the solver rounds every kernel value to float32 in its
    cache either way, so it takes the same steps to the same support vectors and coefficients. Above
    that size (the matrix would take ``8 n^2`` bytes) libsvm computes the kernel itself.
    Decision values come from blocks of matrix products (:func:`rbf_decision_values`) instead of
    libsvm's one kernel evaluation per (record, support vector); they equal libsvm's to about
    ``n_support * 1e-16`` relative, and a value so close to 0 that rounding could flip its sign is
    recomputed by libsvm, so the decisions are libsvm's.

    Parameters
    ----------
    C : float, default 1.0
    class_weight : {"balanced"} or None, default "balanced"
    cache_size : float, default 1000
        libsvm's kernel cache in MB when libsvm computes the kernel (above ``precompute_max_samples``
        rows); the precomputed path uses a 10 MB cache, measured faster there. The cache holds values
        already computed: its size changes the time, never the model (checked at 200-4,000 MB).
    precompute_max_samples : int, default :data:`PRECOMPUTE_MAX_SAMPLES`
        Largest training set fitted through a precomputed kernel matrix (``8 n^2`` bytes: 200 MB at
        5,000 rows, 512 MB at 8,000).
    n_threads : int or None, default None
        Threads computing blocks of kernel values and of decision values (the solver itself is
        sequential); None: the CPU count, at most 4. Any count gives the same numbers. Measured on 2
        cores (5,000 rows, 6,000 records scored): fit 0.268 s with 1 thread, 0.232 s with 2; scoring
        0.071 s and 0.051 s.
    random_state : int or None, default None
        Passed to libsvm (which uses it only for probability estimates, not computed here).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    gamma_ : float
        ``1 / (n_features * X.var())``, scikit-learn's ``gamma="scale"``.
    support_ : ndarray of shape (n_support,)
    support_vectors_ : ndarray of shape (n_support, n_features)
    dual_coef_ : ndarray of shape (1, n_support)
    intercept_ : ndarray of shape (1,)
    n_support_ : ndarray of shape (2,), int32
    n_iter_ : ndarray of shape (1,)
    fit_path_ : {"precomputed", "rbf"}
        How the kernel reached libsvm.
    """

    def __init__(
        self,
        *,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        cache_size: float = 1000,
        precompute_max_samples: int = PRECOMPUTE_MAX_SAMPLES,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.cache_size = cache_size
        self.precompute_max_samples = precompute_max_samples
        self.n_threads = n_threads
        self.random_state = random_state

    def _svc(self, kernel: str, gamma: float | str, cache_size: float) -> SVC:
        return SVC(
            C=self.C,
            kernel=kernel,
            gamma=gamma,
            class_weight=self.class_weight,
            cache_size=cache_size,
            random_state=self.random_state,
        )

    def _threads(self) -> int:
        return min(4, os.cpu_count() or 1) if self.n_threads is None else max(1, int(self.n_threads))

    def fit(self, X: np.ndarray, y: np.ndarray) -> RBFSVC:
        """Fit on ``X`` of shape (n_samples, n_features) and binary labels ``y`` of shape (n_samples,)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y)
        classes = np.unique(y)
        if X.ndim != 2 or y.shape != (len(X),):
            raise DataError(f"X must be 2-d and y 1-d of the same length; got shapes {X.shape} and {y.shape}")
        if len(classes) != 2:
            raise DataError(
                f"RBFSVC separates two classes (members and non-members); y has {len(classes)}: "
                "give it records of both classes"
            )
        var = float(X.var())
        self.gamma_ = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        if len(X) <= self.precompute_max_samples:
            with _kernel_buffer(len(X)) as buf:
                K = rbf_kernel_matrix(X, gamma=self.gamma_, n_threads=self._threads(), out=buf)
                svc = self._svc("precomputed", "scale", _PRECOMPUTED_CACHE_MB).fit(K, y)
                del K
            self.support_vectors_ = X[svc.support_]
            self.fit_path_ = "precomputed"
        else:
            svc = self._svc("rbf", self.gamma_, self.cache_size).fit(X, y)
            self.support_vectors_ = np.ascontiguousarray(svc.support_vectors_)
            self.fit_path_ = "rbf"
        self.classes_ = svc.classes_
        self.support_ = svc.support_
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        self.n_support_ = svc.n_support_
        self.n_iter_ = svc.n_iter_
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Signed distances to the boundary, positive for ``classes_[1]``, ndarray of shape (n_samples,)."""
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError("this RBFSVC is not fitted yet; call fit(X, y) first")
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"X must have shape (n_samples, {self.n_features_in_}); got {X.shape}")
        dec, scale = rbf_decision_values(
            X,
            self.support_vectors_,
            self.dual_coef_[0],
            float(self.intercept_[0]),
            gamma=self.gamma_,
            n_threads=self._threads(),
        )
        near = np.flatnonzero(np.abs(dec) <= _EXACT_BAND * scale)
        if near.size:
            dec[near] = self._libsvm_decision(X[near])
        return dec

    def _libsvm_decision(self, X: np.ndarray) -> np.ndarray:
        """libsvm's own decision values (as ``SVC(kernel="rbf").decision_function``), for the few rows near 0."""
        from sklearn.svm import _libsvm  # the routine SVC.decision_function calls

        dec = _libsvm.decision_function(
            np.ascontiguousarray(X, dtype=np.float64),
            self.support_.astype(np.int32),
            self.support_vectors_,
            self.n_support_.astype(np.int32),
            np.ascontiguousarray(-self.dual_coef_),  # libsvm's signs: scikit-learn flips them for two classes
            -self.intercept_,
            kernel="rbf",
            gamma=self.gamma_,
            cache_size=self.cache_size,
        )
        return -np.asarray(dec, dtype=np.float64).ravel()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``classes_[1]`` where the decision value is positive, else ``classes_[0]``; shape (n_samples,)."""
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
