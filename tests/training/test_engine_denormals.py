"""Flushing denormals is scoped: on while models train, the caller's thread restored after."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from miaudit.training.executors import InProcessExecutor, single_threaded_torch
from miaudit.training.hardware import denormals_flushed, flush_denormals
from miaudit.training.trainer import train_models

pytestmark = pytest.mark.skipif(
    not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals (torch.set_flush_denormal is a no-op)"
)


def _denormal_survives() -> bool:
    return bool((torch.tensor(1e-40) * 1.0).item() != 0.0)


@pytest.fixture(autouse=True)
def _start_unflushed():
    """Each test starts with denormals kept, and leaves them kept, whatever it does."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def test_the_probe_sees_the_flag() -> None:
    assert not denormals_flushed() and _denormal_survives()
    torch.set_flush_denormal(True)
    assert denormals_flushed() and not _denormal_survives()


def test_flush_denormals_is_on_inside_and_restored_after() -> None:
    with flush_denormals():
        assert not _denormal_survives()
        with flush_denormals():  # nested: the inner exit leaves the outer's setting
            pass
        assert not _denormal_survives()
    assert _denormal_survives()
    torch.set_flush_denormal(True)  # a caller who flushes already keeps flushing
    with flush_denormals():
        pass
    assert not _denormal_survives()


def test_flush_denormals_restores_after_an_error() -> None:
    with pytest.raises(RuntimeError, match="inside"), flush_denormals():
        raise RuntimeError("inside")
    assert _denormal_survives()


def test_the_flag_is_per_thread() -> None:
    # a worker thread that turns it on (as the executor's workers do) leaves this thread's alone
    seen: list[bool] = []

    def worker() -> None:
        torch.set_flush_denormal(True)
        seen.append(denormals_flushed())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [True]
    assert _denormal_survives()


@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_train_models_leaves_the_callers_thread_unflushed(digits_split, small_spec, fast_train, subsets,
                                                          engine) -> None:  # fmt: skip
    X, y, pool, _ = digits_split
    train = dataclasses.replace(fast_train, engine=engine, epochs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the engine then runs its one chunk in this thread
    try:
        models = train_models(X, y, subsets(pool, [64]), seeds=[0], model=small_spec, train=train)
    finally:
        torch.set_num_threads(threads)
    assert len(models) == 1
    assert _denormal_survives()  # torch.tensor(1e-40) * 1.0 != 0 after train_models returns


def test_executor_workers_flush_while_a_job_runs_and_restore_after() -> None:
    inside = InProcessExecutor(n_workers=1).map(lambda _: denormals_flushed(), [0, 1])
    assert inside == [True, True]
    assert _denormal_survives()  # n_workers=1 runs jobs in this thread
    with single_threaded_torch():
        assert not _denormal_survives()
    assert _denormal_survives()
