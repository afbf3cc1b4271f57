"""The one place where a seed becomes random generators.

A run has one integer seed. Every stochastic step derives its own seed from it with
:func:`derive_seed` and a path of keys naming the step (``derive_seed(seed, "shadow", 3)``), so that
steps are independent of each other and of the order in which they run. Library code never touches
global random state.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["check_seed", "derive_seed", "make_rng", "torch_generator"]

_MAX_SEED = 2**63 - 1


def check_seed(seed: object, *, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise TypeError/ValueError naming the parameter."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) <= _MAX_SEED:
        raise ValueError(f"{name} must be between 0 and 2**63-1, got {seed}")
    return int(seed)


def _key_to_int(key: str | int) -> int:
    if isinstance(key, bool) or not isinstance(key, str | int | np.integer):
        raise TypeError(f"seed keys must be str or int, got {key!r}")
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    if int(key) < 0:
        raise ValueError(f"integer seed keys must be non-negative, got {key}")
    return int(key)


def derive_seed(seed: int, *keys: str | int) -> int:
    """Derive an independent 63-bit seed for the step named by ``keys``.

    Uses numpy's SeedSequence with the keys as spawn key, so derived streams are statistically
    independent. The same ``seed`` and keys always give the same result.

    >>> derive_seed(0, "target") == derive_seed(0, "target")
    True
    >>> derive_seed(0, "shadow", 0) != derive_seed(0, "shadow", 1)
    True
    """
    seed = check_seed(seed)
    ss = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_to_int(k) for k in keys))
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**32], np.uint64)) & _MAX_SEED


def make_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A numpy Generator for the step named by ``keys`` (no keys: the seed itself)."""
    return np.random.default_rng(derive_seed(seed, *keys) if keys else check_seed(seed))


def torch_generator(seed: int, *keys: str | int) -> torch.Generator:
    """A CPU torch.Generator for the step named by ``keys``."""
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *keys) if keys else check_seed(seed))
    return g
