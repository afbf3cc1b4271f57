"""One content-addressed cache of finished work, shared by every command.

Two kinds of entries, each one safetensors file named by the hash of what determines it:

``models``
    A trained model's weights. Its key is what determines the model completely
    (:func:`model_key`): the sha256 of its training records' bytes (features and labels, in order), the
    architecture, the recipe with its engine and precision resolved, and the model's seed. Keys are
    computed from the data, not from names or indices, so a target, a shadow or a reference model is
    the same entry whichever command, study, attack or split asked for it: after ``reproduce``, a
    ``compare`` on the same target trains only the models it lacks. :class:`CachingTrainer` puts the
    cache in front of :func:`~miaudit.training.trainer.train_models` for targets and for the attacker.
``evals``
    An attack evaluation's metrics and per-record scores, keyed by the target's model key, the
    attack's name and parameters, the attacker's knowledge and the evaluated records.

Writes are atomic (temporary file, then rename), so an interrupted run leaves whole entries or none,
and a rerun picks up where it stopped with the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._frozen import FrozenMemo
from miaudit._io import atomic_path
from miaudit.errors import DataError
from miaudit.training.dp import PrivacyRecord
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import ProgressCallback, train_models

__all__ = [
    "MODEL_KEY_VERSION",
    "Cache",
    "CachingTrainer",
    "array_digest",
    "key_hash",
    "model_key",
    "rows_digest",
    "train_key",
]

logger = logging.getLogger(__name__)

#: bump when the meaning of a model key changes (what determines a model, or how the engine trains it)
MODEL_KEY_VERSION = 1
#: models trained per call of the engine (and per cache checkpoint)
TRAIN_CHUNK = 32
#: trained models kept in memory
_MEMO = 128


def key_hash(key: Any) -> str:
    """A stable 24-hex-digit hash of a JSON-able key.

    >>> key_hash({"a": 1, "b": [2, 3]}) == key_hash({"b": [2, 3], "a": 1})
    True
    >>> key_hash({"a": 1}) == key_hash({"a": 2})
    False
    """
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=_default).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    raise TypeError(f"cannot hash a {type(o).__name__}")


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (C order): equal digests, equal contents.

    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> array_digest(a) == array_digest(a.copy()) != array_digest(a.T)
    True
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype.hasobject:  # their bytes are pointers: equal contents would not give equal digests
            raise TypeError(f"array_digest hashes arrays of numbers or fixed-width strings; got dtype {a.dtype}")
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))  # type: ignore[arg-type]
    return h.hexdigest()


#: digests of rows of frozen arrays, asked for again by every key of a model or an evaluation on them
_ROW_DIGESTS = FrozenMemo(max_bytes=1 << 20, max_entries=16384)


def rows_digest(X: np.ndarray, y: np.ndarray, rows: np.ndarray, *, dtypes: tuple[str, str] | None = None) -> str:
    """``array_digest(X[rows], y[rows])``, each cast to ``dtypes`` first when given.

    Computed once per selection of rows of read-only arrays (:class:`~miaudit._frozen.FrozenMemo`): the
    same records are keyed by the plan, the target and every attack that asks for the same models.
    """
    rows = np.asarray(rows, dtype=np.int64)

    def digest() -> str:
        Xr, yr = X[rows], y[rows]
        if dtypes is not None:
            Xr, yr = np.ascontiguousarray(Xr, dtype=dtypes[0]), np.asarray(yr, dtype=dtypes[1])
        return array_digest(Xr, yr)

    return _ROW_DIGESTS.get((X, y), ("rows", dtypes, rows.tobytes()), digest)


def train_key(train: TrainSpec, model: ModelSpec | None = None) -> dict[str, Any]:
    """The recipe as it determines a model: every field, with ``engine`` and ``precision`` resolved.

    ``auto`` means different arithmetic on different CPUs, so a cache copied between machines must not
    mix them: the key holds what actually runs (the plain loop computes in float32), the fused path where
    it is the chosen one (and which build of it), and for DP-SGD the version of the noise stream
    (:data:`miaudit.training.noise.STREAM_VERSION`). Given the ``model``,
    ``auto`` resolves as the engine will train it (the measured choice of :mod:`miaudit.training.tuning`).
    """
    from miaudit.training.hardware import resolve_precision
    from miaudit.training.trainer import resolve_engine

    engine = resolve_engine(train)  # early stopping under "auto" runs in the loop
    if engine == "loop" or (train.dp and model is None):  # the loop, and DP-SGD where the path is unknown: f32
        precision = "f32"
    elif train.dp:  # DP-SGD: bf16 where the fused path takes it, else f32 (the rules, not the tuner)
        from miaudit.training.tuning import choose_path

        precision = choose_path(model=model, train=train).precision
    else:
        precision = resolve_precision(train.precision, model=model, train=train)
    key = {**train.to_dict(), "engine": engine, "precision": precision}
    if engine == "batched" and model is not None and train.device == "cpu":
        # the fused one-hidden-layer path rounds differently from the stacked one (and its AMX build from
        # its AVX512-BF16 one): its models get keys of their own (stacked keys are as they were)
        from miaudit.training.native import load_mlp1
        from miaudit.training.tuning import path_for

        if path_for(model=model, train=train, precision=precision).fused:
            kernels = load_mlp1()
            key["path"] = f"fused {kernels.kind if kernels is not None else 'unavailable'}"
    if train.dp:  # DP-SGD models also depend on how the noise is drawn
        from miaudit.training.noise import STREAM_VERSION

        key["dp_noise"] = STREAM_VERSION
    return key


def model_key(
    X: np.ndarray, y: np.ndarray, train_idx: np.ndarray, *, seed: int, model: ModelSpec, train: TrainSpec
) -> dict[str, Any]:
    """What determines the model trained on ``X[train_idx], y[train_idx]`` with ``seed``, ``model``, ``train``.

    The training records enter by content (their order included: it sets the minibatches), the spec's
    display name does not (two names for one architecture train the same model).
    """
    idx = np.asarray(train_idx, dtype=np.int64)
    spec = model.to_dict()
    spec.pop("name", None)
    return {
        "v": MODEL_KEY_VERSION,
        "data": rows_digest(X, y, idx, dtypes=("float32", "int64")),
        "n": len(idx),
        "seed": int(seed),
        "model": spec,
        "train": train_key(train, model),
    }


class Cache:
    """Entries under ``root/<kind>/<hash>.safetensors``: arrays plus a JSON metadata record."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: Any) -> Path:
        return self.root / kind / f"{key_hash(key)}.safetensors"

    def has(self, kind: str, key: Any) -> bool:
        return self.path(kind, key).exists()

    def get(self, kind: str, key: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and metadata stored under ``key``, or None. A corrupt entry is removed (it will be redone)."""
        from safetensors import safe_open

        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
                meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        except Exception as exc:  # safetensors raises several types for a damaged file
            logger.warning("removing unreadable cache entry %s (%s); it will be recomputed", path, exc)
            path.unlink(missing_ok=True)
            return None
        if meta.get("key") != json.loads(json.dumps(key, default=_default)):
            raise DataError(f"cache entry {path} does not belong to its key (hash collision?); delete {self.root}")
        return arrays, meta

    def put(self, kind: str, key: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        """Store arrays and metadata under ``key`` atomically."""
        from safetensors.numpy import save_file

        path = self.path(kind, key)
        record = {**meta, "key": json.loads(json.dumps(key, default=_default))}
        with atomic_path(path) as tmp:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in arrays.items()},
                str(tmp),
                metadata={"meta": json.dumps(record, default=_default)},
            )
        return path


def _to_arrays(m: MLPParams) -> dict[str, np.ndarray]:
    out = {f"w{i}": w for i, w in enumerate(m.weights)}
    out.update({f"b{i}": b for i, b in enumerate(m.biases)})
    return out


def _from_arrays(arrays: dict[str, np.ndarray], spec: ModelSpec, meta: dict[str, Any] | None = None) -> MLPParams:
    n = len(spec.layer_sizes) - 1
    privacy = (meta or {}).get("privacy")
    return MLPParams(  # own copies, not views of the file's buffer: read-only all the way down
        spec=spec,
        weights=tuple(np.array(arrays[f"w{i}"]) for i in range(n)),
        biases=tuple(np.array(arrays[f"b{i}"]) for i in range(n)),
        privacy=PrivacyRecord.from_dict(privacy) if privacy is not None else None,
    )


def _meta(model: MLPParams) -> dict[str, Any]:
    """A stored model's metadata: its spec, and the privacy its DP-SGD spent (if any)."""
    meta: dict[str, Any] = {"spec": model.spec.to_dict()}
    if model.privacy is not None:
        meta["privacy"] = model.privacy.to_dict()
    return meta


class CachingTrainer:
    """:func:`~miaudit.training.trainer.train_models` with the cache in front: trains only what is missing.

    Callable like ``train_models`` (a :class:`~miaudit.attacks.base.ModelTrainer`). Each finished model
    is written to the cache at once. ``on_train(n_models, seconds)`` is told about every training call
    that ran; ``progress(n_done, n_total)`` about models as they finish.

    Parameters
    ----------
    cache : Cache or None
        None: nothing is stored (models are still shared within this trainer's lifetime).
    base : callable, default train_models
        What trains the missing models.
    chunk_size : int or callable, optional
        Models per call of ``base`` (default :data:`TRAIN_CHUNK`), each call's models written to the cache
        when it returns (the checkpoint an interrupted run resumes from). A callable is asked when there
        is something to train (a cluster's size is known once it is connected).
    """

    def __init__(
        self,
        cache: Cache | None,
        *,
        base: Callable[..., list[MLPParams]] = train_models,
        on_train: Callable[[int, float], None] | None = None,
        chunk_size: int | Callable[[], int] | None = None,
    ) -> None:
        if not (chunk_size is None or callable(chunk_size)) and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive integer or a callable returning one; got {chunk_size!r}")
        self.cache = cache
        self.base = base
        self.on_train = on_train
        self.chunk_size = chunk_size
        self.n_trained = 0
        self.n_reused = 0
        self._memo: OrderedDict[str, MLPParams] = OrderedDict()
        self._lock = threading.RLock()  # evaluations running side by side share the memo and the counts

    def _per_call(self) -> int:
        if self.chunk_size is None:
            return TRAIN_CHUNK
        n = self.chunk_size() if callable(self.chunk_size) else self.chunk_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"chunk_size must give a positive integer; got {n!r}")
        return n

    def _lookup(self, name: str, key: dict[str, Any], spec: ModelSpec) -> MLPParams | None:
        if name in self._memo:
            self._memo.move_to_end(name)
            return self._memo[name]
        got = self.cache.get("models", key) if self.cache is not None else None
        if got is None:
            return None
        model = _from_arrays(got[0], spec, got[1])
        self._remember(name, model)
        return model

    def _remember(self, name: str, model: MLPParams) -> None:
        self._memo[name] = model
        if len(self._memo) > _MEMO:
            self._memo.popitem(last=False)

    def keys(
        self, X: np.ndarray, y: np.ndarray, train_sets: Sequence[np.ndarray], *, seeds: Sequence[int],
        model: ModelSpec, train: TrainSpec,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The model key of each training set."""
        if len(seeds) != len(train_sets):
            raise ValueError(f"need one seed per training set: {len(train_sets)} sets, {len(seeds)} seeds")
        return [model_key(X, y, s, seed=sd, model=model, train=train) for s, sd in zip(train_sets, seeds, strict=True)]

    def __call__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        model: ModelSpec,
        train: TrainSpec,
        progress: ProgressCallback | None = None,
    ) -> list[MLPParams]:
        with self._lock:
            return self._reuse_or_train(X, y, train_sets, seeds=seeds, model=model, train=train, progress=progress)

    def _reuse_or_train(
        self, X: np.ndarray, y: np.ndarray, train_sets: Sequence[np.ndarray], *, seeds: Sequence[int],
        model: ModelSpec, train: TrainSpec, progress: ProgressCallback | None,
    ) -> list[MLPParams]:  # fmt: skip
        keys = self.keys(X, y, train_sets, seeds=seeds, model=model, train=train)
        names = [key_hash(k) for k in keys]
        out: dict[str, MLPParams] = {}
        missing: dict[str, int] = {}
        for i, (name, key) in enumerate(zip(names, keys, strict=True)):
            if name in out or name in missing:
                continue
            found = self._lookup(name, key, model)
            if found is None:
                missing[name] = i
            else:
                out[name] = found
        self.n_reused += len(out)
        todo = list(missing.items())
        per_call = self._per_call() if todo else 1
        for start in range(0, len(todo), per_call):
            chunk = todo[start : start + per_call]
            t0 = time.perf_counter()
            done_before = start

            def chunk_progress(d: int, t: int, done_before: int = done_before) -> None:
                if progress is not None:
                    progress(done_before + d, len(todo))

            models = self.base(
                X,
                y,
                [np.asarray(train_sets[i]) for _, i in chunk],
                seeds=[seeds[i] for _, i in chunk],
                model=model,
                train=train,
                progress=chunk_progress,
            )
            for (name, i), m in zip(chunk, models, strict=True):
                if self.cache is not None:
                    self.cache.put("models", keys[i], _to_arrays(m), _meta(m))
                self._remember(name, m)
                out[name] = m
            self.n_trained += len(chunk)
            if self.on_train is not None:
                self.on_train(len(chunk), time.perf_counter() - t0)
        return [out[n] for n in names]
