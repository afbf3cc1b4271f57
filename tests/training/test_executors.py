"""Executors and hardware detection."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from miaudit.training import hardware
from miaudit.training.executors import Executor, InProcessExecutor, default_workers, single_threaded_torch


def _job(x: int) -> tuple[int, int, str]:
    return x * x, torch.get_num_threads(), threading.current_thread().name


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_map_keeps_order_and_reports_each_job(n_workers: int) -> None:
    ex = InProcessExecutor(n_workers=n_workers)
    assert isinstance(ex, Executor)
    done: list[int] = []
    out = ex.map(_job, list(range(7)), on_done=lambda i, r: done.append(i))
    assert [r[0] for r in out] == [i * i for i in range(7)]
    assert sorted(done) == list(range(7))
    assert all(r[1] == 1 for r in out)  # each job runs with one torch thread
    assert ex.map(_job, []) == []


def test_threads_run_jobs_concurrently_and_restore_torch_threads() -> None:
    before = torch.get_num_threads()
    barrier = threading.Barrier(2, timeout=10)

    def job(x: int) -> str:
        barrier.wait()  # deadlocks (BrokenBarrierError after 10 s) unless two jobs run at once
        return threading.current_thread().name

    names = InProcessExecutor(n_workers=2).map(job, [0, 1])
    assert len(set(names)) == 2 and all(n.startswith("miaudit-train") for n in names)
    assert torch.get_num_threads() == before


def test_first_error_propagates_and_stops_the_rest() -> None:
    started: list[int] = []

    def job(x: int) -> int:
        started.append(x)
        if x == 1:
            raise RuntimeError("job 1 failed")
        time.sleep(0.05)
        return x

    with pytest.raises(RuntimeError, match="job 1 failed"):
        InProcessExecutor(n_workers=2).map(job, list(range(20)))
    assert len(started) < 20
    with pytest.raises(RuntimeError, match="job 1 failed"):
        InProcessExecutor(n_workers=1).map(job, [0, 1, 2])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_count_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="n_workers must be a positive integer or None"):
        InProcessExecutor(n_workers=bad)  # type: ignore[arg-type]


def test_single_threaded_torch_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with single_threaded_torch():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert default_workers() == max(1, before)
    assert "n_workers=" in repr(InProcessExecutor())


# ---------------------------------------------------------------------------------------------
# hardware
# ---------------------------------------------------------------------------------------------


def test_cpu_flags_are_parsed_from_cpuinfo() -> None:
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx512f amx_bf16\n\nprocessor\t: 1\n"
    assert hardware.parse_cpu_flags(text) == frozenset({"fpu", "sse", "avx512f", "amx_bf16"})
    assert hardware.parse_cpu_flags("Features\t: fp asimd bf16\n") == frozenset({"fp", "asimd", "bf16"})
    assert hardware.parse_cpu_flags("nothing here") == frozenset()


def test_native_bf16_needs_a_flag(monkeypatch) -> None:
    hardware.native_bf16.cache_clear()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert hardware.native_bf16() is False
    hardware.native_bf16.cache_clear()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert hardware.native_bf16() is bool(torch.backends.mkldnn.is_available())
    hardware.native_bf16.cache_clear()


def test_this_machine_is_detected_consistently() -> None:
    flags = hardware.cpu_flags()
    if not flags & hardware.BF16_FLAGS:
        assert hardware.native_bf16() is False
    assert hardware.resolve_precision("auto") == ("bf16" if hardware.native_bf16() else "f32")
    mem = hardware.available_memory_bytes()
    assert mem is None or mem > 0


def test_matmul_peak_is_measured() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        assert hardware.matmul_peak_gflops(dtype, size=64, seconds=0.01) > 0
    with pytest.raises(ValueError, match="size must be >= 1 and seconds > 0"):
        hardware.matmul_peak_gflops(size=0)
