"""A content-addressed cache of finished work, with atomic writes.

Each entry is one safetensors file named by the hash of what determines it (data split, model spec,
training recipe, seed, attack settings): numpy arrays plus a JSON metadata record. A write goes to a
temporary file first and is renamed into place, so an interrupted run leaves either a whole entry or
none, and a rerun picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.errors import DataError

__all__ = ["Cache", "key_hash"]

logger = logging.getLogger(__name__)


def key_hash(key: Any) -> str:
    """A stable 24-hex-digit hash of a JSON-able key.

    >>> key_hash({"a": 1, "b": [2, 3]}) == key_hash({"b": [2, 3], "a": 1})
    True
    """
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=_default).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(f"cannot hash a {type(o).__name__}")


class Cache:
    """Entries under ``root/<kind>/<hash>.safetensors``."""

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        record = {**meta, "key": json.loads(json.dumps(key, default=_default))}
        save_file(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()},
            str(tmp),
            metadata={"meta": json.dumps(record, default=_default)},
        )
        tmp.replace(path)
        return path
