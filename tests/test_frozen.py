"""Answers remembered for read-only arrays: reused only while nothing they came from can have changed."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit._frozen import FrozenMemo, is_frozen


def frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self):
        self.calls += 1
        return self.fn()


def test_is_frozen_follows_the_arrays_a_view_shares_memory_with():
    base = np.arange(10.0)
    assert not is_frozen(base)
    view = frozen(base[2:5])
    assert not is_frozen(view)  # read-only itself, but its base can still be written
    frozen(base)
    assert is_frozen(view) and is_frozen(base)
    assert is_frozen(np.frombuffer(b"abcdefgh", dtype=np.uint8))
    assert not is_frozen(frozen(np.frombuffer(bytearray(8), dtype=np.uint8)))  # a bytearray can change


def test_an_answer_is_computed_once_per_frozen_array_and_question():
    memo = FrozenMemo(max_bytes=1 << 20)
    a = frozen(np.arange(12.0))
    total = Counter(lambda: float(a.sum()))
    assert [memo.get((a,), "sum", total) for _ in range(3)] == [66.0] * 3
    assert total.calls == 1
    first = Counter(lambda: float(a[0]))
    assert memo.get((a,), "first", first) == 0.0 and first.calls == 1  # another question, computed


def test_writeable_arrays_and_equal_copies_are_computed_afresh():
    memo = FrozenMemo(max_bytes=1 << 20)
    a = np.arange(4.0)
    assert memo.get((a,), "sum", lambda: float(a.sum())) == 6.0
    a[0] = 10.0  # a writeable array may change: its answer was never kept
    assert memo.get((a,), "sum", lambda: float(a.sum())) == 16.0
    assert len(memo) == 0
    b = frozen(np.arange(4.0))
    c = frozen(b.copy())
    assert memo.get((b,), "sum", lambda: 1.0) == 1.0
    assert memo.get((c,), "sum", lambda: 2.0) == 2.0  # equal contents, another array: computed


def test_owners_are_matched_by_identity():
    memo = FrozenMemo(max_bytes=1 << 20)
    a = frozen(np.ones(3))

    class Model:
        def __init__(self, w):
            self.w = w

    m1, m2 = Model(1.0), Model(2.0)
    assert memo.get((a,), "out", lambda: m1.w * a.sum(), owners=(m1,)) == 3.0
    assert memo.get((a,), "out", lambda: m2.w * a.sum(), owners=(m2,)) == 6.0
    assert memo.get((a,), "out", lambda: -1.0, owners=(m1,)) == 3.0
    assert memo.get((a,), "out", lambda: 99.0, owners=(7,)) == 99.0  # an int has no weak reference: not kept
    assert memo.get((a,), "out", lambda: 98.0, owners=(7,)) == 98.0


def test_an_entry_dies_with_its_array():
    memo = FrozenMemo(max_bytes=1 << 20)
    a = frozen(np.zeros(5))
    memo.get((a,), "q", lambda: 1)
    key = next(iter(memo._entries))
    refs = memo._entries[key][0]
    del a
    assert refs[0]() is None  # a new array given the old one's id cannot match it


def test_the_memo_keeps_at_most_its_bytes_and_entries():
    memo = FrozenMemo(max_bytes=3 * 800, max_entries=5)
    arrays = [frozen(np.full(10, i, dtype=np.float64)) for i in range(6)]
    for a in arrays[:4]:
        memo.get((a,), "copy", lambda a=a: np.repeat(a, 10))  # 800 bytes each
    assert len(memo) == 3  # the oldest went
    assert memo.nbytes == 3 * 800
    calls = Counter(lambda: np.repeat(arrays[0], 10))
    memo.get((arrays[0],), "copy", calls)
    assert calls.calls == 1 and len(memo) == 3 and memo.nbytes == 3 * 800
    memo.get((arrays[4],), "flag", lambda: True)
    assert len(memo) == 3 and memo.nbytes == 2 * 800 + 64  # two copies had to go to make room
    big = Counter(lambda: np.zeros(1000))
    memo.get((arrays[5],), "big", big)
    memo.get((arrays[5],), "big", big)
    assert big.calls == 2  # larger than the memo: never kept
    small = FrozenMemo(max_bytes=1 << 20, max_entries=2)
    for i, a in enumerate(arrays):
        small.get((a,), "i", lambda i=i: i)
    assert len(small) == 2
    assert small.get((arrays[0],), "i", lambda: -1) == -1  # evicted: computed again
    assert small.get((arrays[5],), "i", lambda: -1) == 5  # kept


def test_threads_asking_at_once_wait_for_one_computation():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    memo = FrozenMemo(max_bytes=1 << 20)
    a = frozen(np.arange(5.0))
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> float:
        calls.append(1)
        started.set()
        release.wait(5)
        return float(a.sum())

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(memo.get, (a,), "sum", slow)
        started.wait(5)
        others = [pool.submit(memo.get, (a,), "sum", slow) for _ in range(3)]
        release.set()
        assert [f.result(5) for f in (first, *others)] == [10.0] * 4
    assert len(calls) == 1

    def failing() -> float:
        raise ValueError("no answer")

    with pytest.raises(ValueError, match="no answer"):
        memo.get((a,), "other", failing)
    assert memo.get((a,), "other", lambda: 1.0) == 1.0  # a failed computation leaves nothing behind


def test_module_doctests() -> None:
    import doctest

    import miaudit._frozen as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted >= 8


def test_an_entry_of_an_array_gone_is_replaced_not_counted_twice():
    class Owner:
        pass

    memo = FrozenMemo(max_bytes=1 << 20)
    a = frozen(np.arange(4.0))
    owner = Owner()
    memo.get((a,), "out", lambda: np.zeros(100), owners=(owner,))
    assert memo.nbytes == 800
    gone = id(owner)
    del owner
    for _ in range(1000):  # CPython hands a freed object's memory to the next object of its size
        other = Owner()
        if id(other) == gone:
            break
    else:
        pytest.skip("no object took the freed one's address")
    got = memo.get((a,), "out", lambda: np.ones(50), owners=(other,))
    assert got.sum() == 50.0  # a new owner at the old address is another owner: computed
    assert len(memo) == 1 and memo.nbytes == 400
