"""Answers computed from read-only arrays, remembered by the arrays' identity.

An experiment asks the same questions of the same records many times: the digest of a model's training
records (its cache key is asked for by the plan, by the target and by every attack that trains it), whether
a population is finite (every attacker's knowledge checks it), a model's outputs on its shadow sets (nine
shadows serve every shadow count from 2 to 9, so their outputs are asked for 44 times, not 9). Hashing or
predicting again costs as much each time; :class:`FrozenMemo` computes each answer once.

An answer is reused only while every array it was computed from is the same, still alive and *frozen*:
read-only, and so is every array whose memory it views (:func:`is_frozen`), so its contents cannot have
changed. Anything else (a writeable array, a view of one, a copy) is computed afresh, so a memo never changes
a result, only how often it is computed. Owners (a model whose outputs are remembered) are matched by
identity the same way. Entries are dropped, oldest first, beyond a size in bytes or a number of entries
(an entry whose arrays are gone is never matched again, and goes in its turn).

>>> a = np.arange(6.0)
>>> a.flags.writeable = False
>>> memo = FrozenMemo(max_bytes=1 << 20)
>>> calls = []
>>> def total():
...     calls.append(1)
...     return float(a.sum())
>>> memo.get((a,), "sum", total), memo.get((a,), "sum", total), len(calls)
(15.0, 15.0, 1)
>>> b = np.arange(6.0)  # writeable: never remembered
>>> memo.get((b,), "sum", lambda: float(b.sum())), len(memo)
(15.0, 1)
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["FrozenMemo", "is_frozen"]

T = TypeVar("T")


def is_frozen(a: np.ndarray) -> bool:
    """Whether ``a``'s contents cannot change through numpy: it and every array it views are read-only.

    An array that views memory numpy does not own as an array (a buffer, a memory map) counts as frozen
    only when that memory is immutable ``bytes``.

    >>> a = np.zeros(3)
    >>> is_frozen(a)
    False
    >>> v = a[:2]
    >>> v.flags.writeable = False
    >>> is_frozen(v)  # a writeable array shares its memory
    False
    >>> a.flags.writeable = False
    >>> is_frozen(v), is_frozen(np.frombuffer(b"abcd", dtype=np.uint8))
    (True, True)
    """
    base: Any = a
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return base is None or isinstance(base, bytes)


def _size(value: Any) -> int:
    return int(value.nbytes) if isinstance(value, np.ndarray) else 64


class FrozenMemo:
    """Values computed from frozen arrays (and owners), kept while those objects are alive and frozen.

    Parameters
    ----------
    max_bytes : int
        The most bytes of remembered arrays kept (other values count 64 bytes); the oldest go first.
    max_entries : int, default 4096
        The most entries kept.
    """

    def __init__(self, *, max_bytes: int, max_entries: int = 4096) -> None:
        self.max_bytes = int(max_bytes)
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[Hashable, tuple[tuple[weakref.ref[Any], ...], Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._running: dict[Hashable, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """The bytes the remembered values count for (arrays their ``nbytes``, other values 64 each)."""
        return self._bytes

    def get(
        self, arrays: Sequence[np.ndarray], question: Hashable, compute: Callable[[], T], *,
        owners: Sequence[object] = (),
    ) -> T:  # fmt: skip
        """``compute()``, or its value from an earlier call with the same frozen ``arrays``, ``owners``, ``question``.

        ``question`` names what is computed from them (and its parameters: a row selection as bytes, say);
        it must determine the answer together with the arrays' contents and the owners. Array values are
        stored as they are returned: callers that return them to others should copy them. A question asked
        by several threads at once is computed by the first; the others wait for its answer.
        """
        objs = (*owners, *arrays)
        if not all(is_frozen(a) for a in arrays):
            return compute()
        key = (tuple(id(o) for o in objs), question)
        while True:
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None and all(ref() is o for ref, o in zip(hit[0], objs, strict=True)):
                    self._entries.move_to_end(key)
                    return hit[1]  # type: ignore[no-any-return]
                running = self._running.get(key)
                if running is None:  # this thread computes it; others asking meanwhile wait for it
                    running = self._running[key] = threading.Event()
                    break
            running.wait()  # then look again (computed afresh if that computation failed or was not kept)
        try:
            return self._compute(key, objs, compute)
        finally:
            with self._lock:
                self._running.pop(key).set()

    def _compute(self, key: Hashable, objs: tuple[object, ...], compute: Callable[[], T]) -> T:
        value = compute()
        size = _size(value)
        if size > self.max_bytes:
            return value
        try:
            refs = tuple(weakref.ref(o) for o in objs)
        except TypeError:  # an owner that cannot be referred to weakly is not remembered
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (refs, value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value
