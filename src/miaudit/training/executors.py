"""Executors: who runs the chunks of models that the batched engine cuts a training job into.

The engine splits K models into chunks (by memory budget and by the number of workers) and hands
them to an :class:`Executor` as independent jobs: ``executor.map(fn, jobs)``. A job is a plain,
picklable description (arrays and frozen specs) and ``fn`` a module-level function, so a
distributed executor ships jobs to other machines without changing the engine:
:class:`~miaudit.training.distributed.DaskExecutor` runs them on a Dask cluster with the same results.

:class:`InProcessExecutor` runs the jobs on threads of this process. Each worker thread runs its
job with one intra-op torch thread, so K models on two cores run as two chunks side by side
instead of every small operation being split over two threads: that avoids a synchronisation per
operation, keeps working well when other processes share the cores, and makes every model's
result independent of the thread count and of how models were grouped into chunks (a
single-threaded batched matrix product computes each model's slice the same way).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar, runtime_checkable

import torch

from miaudit.training.hardware import flush_denormals

__all__ = ["Executor", "InProcessExecutor", "default_workers", "single_threaded_torch"]

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs independent jobs and returns their results in order.

    Attributes
    ----------
    n_workers : int
        How many jobs run at the same time; the engine makes at least this many chunks when it
        has that many models. Read-only here: a plain attribute satisfies it, and so does a property
        (a cluster's executor counts its workers when it connects).
    """

    @property
    def n_workers(self) -> int: ...

    def map(
        self,
        fn: Callable[[J], R],
        jobs: Sequence[J],
        *,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """Return ``[fn(job) for job in jobs]``; call ``on_done(i, result)`` as each job finishes.

        ``on_done`` is called in the calling thread. The first exception raised by a job is
        raised again here after the other running jobs stop.
        """
        ...


def default_workers() -> int:
    """The number of cores torch uses in this thread (``torch.get_num_threads()``), at least 1."""
    return max(1, torch.get_num_threads())


class single_threaded_torch:
    """Context manager: torch uses one intra-op thread in the current thread, restored on exit.

    Also flushes denormal floats to zero in this thread while it is active (the flag is per thread):
    Adam's running averages decay into denormals late in training, which otherwise slows each step
    several times. The thread's previous setting is restored on exit (:func:`~.hardware.flush_denormals`).
    """

    def __enter__(self) -> single_threaded_torch:
        self._threads = torch.get_num_threads()
        self._flush = flush_denormals()
        self._flush.__enter__()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._threads)
        self._flush.__exit__(None, None, None)


class InProcessExecutor:
    """Run jobs on ``n_workers`` threads of this process, one torch thread each.

    Parameters
    ----------
    n_workers : int, optional
        Jobs run concurrently; default :func:`default_workers` (the cores torch would use).
        With 1, jobs run one after the other in the calling thread.
    """

    def __init__(self, n_workers: int | None = None) -> None:
        if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
            raise ValueError(f"n_workers must be a positive integer or None; got {n_workers!r}")
        self.n_workers = default_workers() if n_workers is None else n_workers

    def __repr__(self) -> str:
        return f"InProcessExecutor(n_workers={self.n_workers})"

    def map(
        self,
        fn: Callable[[J], R],
        jobs: Sequence[J],
        *,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        jobs = list(jobs)
        if self.n_workers == 1 or len(jobs) <= 1:
            results: list[R] = []
            for i, job in enumerate(jobs):
                with single_threaded_torch():
                    results.append(fn(job))
                if on_done is not None:
                    on_done(i, results[-1])
            return results
        return self._map_threads(fn, jobs, on_done)

    def _map_threads(self, fn: Callable[[J], R], jobs: list[J], on_done: Callable[[int, R], None] | None) -> list[R]:
        stop = threading.Event()

        def run(job: J) -> R:
            if stop.is_set():
                raise _Cancelled
            with single_threaded_torch():
                return fn(job)

        workers = min(self.n_workers, len(jobs))
        out: dict[int, R] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miaudit-train") as pool:
            futures: dict[Future[R], int] = {pool.submit(run, job): i for i, job in enumerate(jobs)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None and not isinstance(exc, _Cancelled):
                        stop.set()
                        for other in pending:
                            other.cancel()
                        raise exc
                    if exc is None:
                        i = futures[fut]
                        out[i] = fut.result()
                        if on_done is not None:
                            on_done(i, out[i])
        logger.debug("ran %d jobs on %d threads", len(jobs), workers)
        return [out[i] for i in range(len(jobs))]


class _Cancelled(Exception):
    """A job skipped because another job failed."""
