"""The Dask executor: the engine's chunks of models trained on the workers of a Dask cluster.

:class:`DaskExecutor` is an :class:`~miaudit.training.executors.Executor` like the in-process one, so
the engine cuts work into the same :class:`~miaudit.training.engine.planning.ChunkJob` jobs and every
model comes out bitwise the same (a chunk's models do not depend on how models were grouped, on the
thread count or on the machine's other work; the workers must run the same miaudit, torch and compiled
kernels). Either it connects to a running scheduler (``DaskExecutor("tcp://HOST:8786")``: one
``dask scheduler`` and a ``dask worker`` per machine, see ``docs/cluster.md``) or it starts a local
cluster of ``workers`` processes, one thread each, listening on 127.0.0.1 only (with Dask's statistical
profiler off in its workers: it samples the busy thread every 10 ms).

What travels. The record pool (the job field that every job holds, the same tensor) is sent once per
engine call: scattered to every worker (``client.scatter(..., broadcast=True)``) and referenced by each
job, which then carries only its models' row indices, seeds and specs. bf16 tensors travel as their
int16 bits (Dask's serialiser rejects bf16) and are viewed as bf16 again on the worker without a copy.
Each finished chunk comes back as it finishes and ``on_done`` is called with it in the calling thread,
so progress lines and cache checkpoints work as in process.

Faults. A worker that dies mid-job (killed, out of memory) has its jobs rerun on the others by Dask
(a restarted worker fetches the pool from its peers); the results are the same numbers. A job that
kills three workers (Dask's ``allowed-failures``) is a :class:`~miaudit.errors.TrainingError` naming its
models. A scheduler that cannot be reached within :data:`CONNECT_TIMEOUT_S` seconds, a cluster without
workers for :data:`NO_WORKERS_TIMEOUT_S` seconds (none joined, or all were lost mid-run) and a lost
connection to the scheduler are TrainingErrors that say so; models finished before are in the cache of
the run that asked for them, so a rerun resumes. At connect time every worker reports its miaudit and
torch versions (``client.run``); a worker that differs from this process is an error naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, TrainingError
from miaudit.training.executors import single_threaded_torch
from miaudit.training.networks import shared_tensor

__all__ = [
    "CONNECT_TIMEOUT_S",
    "NO_WORKERS_TIMEOUT_S",
    "DaskExecutor",
    "MapRecord",
    "check_worker_versions",
    "worker_versions",
]

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

#: seconds to reach the scheduler before giving up
CONNECT_TIMEOUT_S = 10.0
#: seconds a cluster may have no worker (none joined, or all lost mid-run) before the run gives up
NO_WORKERS_TIMEOUT_S = 60.0
#: seconds between health checks while waiting for jobs
_POLL_S = 0.5
#: times one map call resends the shared records after the cluster lost every copy of them
_MAX_RESUBMITS = 3
#: versions that must agree between this process and every worker
_MUST_MATCH = ("miaudit", "torch")
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def worker_versions() -> dict[str, str]:
    """What a worker runs: miaudit, torch, numpy and Python versions, and its compiled kernels.

    Called on every worker at connect time (and in this process, to compare).

    Returns
    -------
    dict of str to str
        Keys ``miaudit``, ``torch``, ``numpy``, ``python``, ``native``.
    """
    import platform

    import miaudit
    from miaudit.training.native import native_status

    return {
        "miaudit": miaudit.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "native": native_status(),
    }


def check_worker_versions(reports: dict[str, Any], local: dict[str, str]) -> None:
    """Raise if a worker's miaudit or torch version differs from this process's, naming the worker.

    Parameters
    ----------
    reports : dict
        ``{worker address: worker_versions() of that worker, or the exception it raised}``.
    local : dict
        :func:`worker_versions` of this process.

    Raises
    ------
    TrainingError
        Naming every worker that differs (or could not report), what it runs and what to install.

    >>> check_worker_versions({"tcp://w:1": {"miaudit": "1", "torch": "2"}}, {"miaudit": "1", "torch": "2"})
    """
    problems = []
    for address, got in sorted(reports.items()):
        if isinstance(got, BaseException) or not isinstance(got, dict):
            problems.append(f"worker {address} could not report its versions ({type(got).__name__}: {got})")
            continue
        differ = [f"{k} {got.get(k)} (here {local[k]})" for k in _MUST_MATCH if got.get(k) != local[k]]
        if differ:
            problems.append(f"worker {address} runs {', '.join(differ)}")
        elif got.get("native") != local.get("native"):
            logger.warning(
                "worker %s's compiled kernels differ (%s; here %s): its models agree with this machine's to "
                "rounding, not bitwise",
                address,
                got.get("native"),
                local.get("native"),
            )
    if problems:
        want = " ".join(f"{k}=={local[k]}" for k in _MUST_MATCH)
        raise TrainingError(
            "the Dask workers must run the same miaudit and torch as this process: "
            + "; ".join(problems)
            + f". Install the same versions on every worker ({want}) and restart it."
        )


@dataclass(frozen=True)
class MapRecord:
    """What one :meth:`DaskExecutor.map` call did, for logs and the scale-out benchmark.

    Attributes
    ----------
    n_jobs : int
    shared_bytes : int
        Bytes of the fields every job shares (sent once to each worker).
    job_bytes : int
        Bytes of array data the jobs carry themselves (sent with each job).
    result_bytes : int
        Bytes of array data the results bring back.
    wall_s : float
        Seconds from the call to its last result, scatter included.
    scatter_s : float
        Seconds spent scattering the shared fields.
    job_s : tuple of float
        Each job's compute seconds on its worker, in job order.
    """

    n_jobs: int
    shared_bytes: int
    job_bytes: int
    result_bytes: int
    wall_s: float
    scatter_s: float
    job_s: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class _Shared:
    """The fields every job shares, as plain arrays (bf16 tensors as their int16 bits)."""

    arrays: dict[str, np.ndarray]
    kinds: dict[str, str]  # "numpy", "torch" or "bf16"

    @classmethod
    def pack(cls, values: dict[str, Any]) -> _Shared:
        arrays, kinds = {}, {}
        for name, v in values.items():
            if isinstance(v, torch.Tensor):
                t = v.detach().contiguous()
                if t.dtype == torch.bfloat16:
                    arrays[name], kinds[name] = t.view(torch.int16).numpy(), "bf16"
                else:
                    arrays[name], kinds[name] = t.numpy(), "torch"
            else:
                arrays[name], kinds[name] = np.ascontiguousarray(v), "numpy"
        return cls(arrays, kinds)

    def unpack(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, a in self.arrays.items():
            kind = self.kinds[name]
            if kind == "numpy":
                out[name] = a
            else:
                t = shared_tensor(a)
                out[name] = t.view(torch.bfloat16) if kind == "bf16" else t
        return out

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def _nbytes(obj: Any) -> int:
    """Bytes of the arrays and tensors inside ``obj`` (dataclass fields, tuples, lists, dicts)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, tuple | list):
        return sum(_nbytes(v) for v in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    return 0


def _shared_fields(jobs: Sequence[Any]) -> list[str]:
    """Fields of dataclass jobs that hold the same array or tensor object in every job."""
    if len(jobs) < 2 or not dataclasses.is_dataclass(jobs[0]) or isinstance(jobs[0], type):
        return []
    names = []
    for f in dataclasses.fields(jobs[0]):
        v = getattr(jobs[0], f.name)
        if isinstance(v, np.ndarray | torch.Tensor) and all(getattr(j, f.name, None) is v for j in jobs[1:]):
            names.append(f.name)
    return names


def _warm_up() -> None:
    """On a worker at connect time: import the engine and load the compiled kernels before the first job."""
    import miaudit.training.engine.orchestration  # noqa: F401
    from miaudit.training.native import native_status

    native_status()


def _run_job(fn: Callable[[Any], Any], job: Any, shared: _Shared | None) -> tuple[Any, float]:
    """On a worker: put the shared fields back into the job, run it with one torch thread, time it."""
    if shared is not None:
        job = dataclasses.replace(job, **shared.unpack())
    t0 = time.perf_counter()
    with single_threaded_torch():
        result = fn(job)
    return result, time.perf_counter() - t0


@dataclass
class _Health:
    """When the cluster was last seen with workers and connected."""

    workers_seen: float = field(default_factory=time.monotonic)
    connected_seen: float = field(default_factory=time.monotonic)


class DaskExecutor:
    """Run the engine's jobs on a Dask cluster: an existing scheduler, or local worker processes.

    Connects (or starts the local cluster) on first use: :meth:`start`, the first :meth:`map` or the
    first read of :attr:`n_workers`. Close it with :meth:`close` or use it as a context manager.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    workers : int, optional
        Start a local cluster of this many worker processes (one thread each, on 127.0.0.1) instead.
        Exactly one of ``scheduler`` and ``workers`` is given.
    connect_timeout : float, default CONNECT_TIMEOUT_S
        Seconds to reach the scheduler.
    no_workers_timeout : float, default NO_WORKERS_TIMEOUT_S
        Seconds the cluster may have no worker (at connect time or mid-run), or the scheduler may be
        unreachable mid-run, before :meth:`map` raises.
    check_versions : bool, default True
        Compare every worker's miaudit and torch versions with this process's at connect time.

    Attributes
    ----------
    n_workers : int
        Jobs the cluster runs at once (its worker threads), counted at connect time.
    records : list of MapRecord
        One per :meth:`map` call.

    Examples
    --------
    >>> from miaudit.training.distributed import DaskExecutor
    >>> from miaudit.training.trainer import train_models
    >>> with DaskExecutor(workers=2) as ex:  # doctest: +SKIP
    ...     models = train_models(X, y, sets, seeds=seeds, model=spec, train=recipe, executor=ex)
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        workers: int | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        no_workers_timeout: float = NO_WORKERS_TIMEOUT_S,
        check_versions: bool = True,
    ) -> None:
        if (scheduler is None) == (workers is None):
            raise ConfigError(
                "DaskExecutor needs exactly one of scheduler (the address of a running Dask scheduler, e.g. "
                f"tcp://HOST:8786) and workers (local worker processes to start); got scheduler={scheduler!r}, "
                f"workers={workers!r}"
            )
        if scheduler is not None and (not isinstance(scheduler, str) or not _ADDRESS.match(scheduler.strip())):
            raise ConfigError(f"scheduler must be a Dask scheduler address like tcp://HOST:8786; got {scheduler!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be a positive integer (local worker processes); got {workers!r}")
        for name, value in (("connect_timeout", connect_timeout), ("no_workers_timeout", no_workers_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds; got {value!r}")
        self.scheduler = scheduler.strip() if scheduler is not None else None
        self.workers = workers
        self.connect_timeout = float(connect_timeout)
        self.no_workers_timeout = float(no_workers_timeout)
        self.check_versions = check_versions
        self.records: list[MapRecord] = []
        self._client: Any = None
        self._cluster: Any = None
        self._n_workers = 0

    def __repr__(self) -> str:
        where = f"scheduler={self.scheduler!r}" if self.scheduler else f"workers={self.workers}"
        state = f", n_workers={self._n_workers}" if self._client is not None else ", not connected"
        return f"DaskExecutor({where}{state})"

    # ------------------------------------------------------------------ connection
    @property
    def address(self) -> str:
        """The scheduler's address (the local cluster's once it is started)."""
        if self._client is not None:
            return str(self._client.scheduler.address)
        return self.scheduler or "(local cluster, not started)"

    @property
    def n_workers(self) -> int:
        """Worker threads of the cluster (connecting first if needed)."""
        self.start()
        return self._n_workers

    @property
    def client(self) -> Any:
        """The connected ``distributed.Client`` (connecting first if needed)."""
        self.start()
        return self._client

    def start(self) -> DaskExecutor:
        """Connect to the scheduler (or start the local cluster), wait for a worker, check versions."""
        if self._client is not None:
            return self
        distributed = require_extra("distributed", "dask")
        try:
            if self.workers is not None:
                import dask

                # the workers' statistical profiler samples the job's thread every 10 ms: half their idle CPU
                with dask.config.set({"distributed.worker.profile.enabled": False}):
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",
                        silence_logs=logging.ERROR,
                    )
                self._client = distributed.Client(self._cluster, timeout=self.connect_timeout, set_as_default=False)
            else:
                self._client = distributed.Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise TrainingError(
                f"could not reach the Dask scheduler at {self.address} within {self.connect_timeout:g} s ({exc}); "
                "start it (`dask scheduler`), check the address and port (--scheduler / MIAUDIT_SCHEDULER) and that "
                "this machine can reach it, then run the command again (finished models are in the cache)"
            ) from None
        try:
            self._wait_for_workers()
            if self.check_versions:
                reports = self._client.run(worker_versions, on_error="return")
                check_worker_versions(reports, worker_versions())
            self._client.run(_warm_up, on_error="ignore")
        except BaseException:
            self.close()
            raise
        logger.info("connected to Dask scheduler %s: %d worker threads", self.address, self._n_workers)
        return self

    def _wait_for_workers(self, *, n_done: int | None = None, n_jobs: int = 0) -> None:
        """Wait up to ``no_workers_timeout`` for a worker; count the worker threads."""
        try:
            self._client.wait_for_workers(1, timeout=self.no_workers_timeout)
        except (TimeoutError, OSError):
            if n_done is None:
                raise TrainingError(
                    f"the Dask scheduler at {self.address} has no workers after {self.no_workers_timeout:g} s; start "
                    f"them on each machine (`dask worker {self.address} --nthreads 1`) and run the command again"
                ) from None
            raise TrainingError(self._no_workers_message(n_done, n_jobs)) from None
        self._n_workers = max(1, sum(self._client.nthreads().values()))

    def _no_workers_message(self, n_done: int, n_jobs: int) -> str:
        return (
            f"the Dask cluster at {self.address} has had no workers for more than {self.no_workers_timeout:g} s "
            f"(all were lost; {n_done} of {n_jobs} jobs had finished; finished models are in the cache, so a rerun "
            f"resumes); start workers (`dask worker {self.address} --nthreads 1`) and run the command again"
        )

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this executor started one. Idempotent."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close(timeout=10)
                except Exception as exc:  # closing a half-dead cluster must not hide the error that killed it
                    logger.debug("closing %r: %s", thing, exc)

    def __enter__(self) -> DaskExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running jobs
    def map(
        self,
        fn: Callable[[J], R],
        jobs: Sequence[J],
        *,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """Return ``[fn(job) for job in jobs]``, run on the cluster; ``on_done(i, result)`` as each finishes.

        ``fn`` must be importable on the workers (a module-level function of an installed package). The
        first exception a job raises is raised here after the other jobs are cancelled.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        client = self.client
        t0 = time.perf_counter()
        names = _shared_fields(jobs)
        shared = _Shared.pack({n: getattr(jobs[0], n) for n in names}) if names else None
        sent: list[Any] = [dataclasses.replace(j, **dict.fromkeys(names)) for j in jobs] if names else jobs  # type: ignore[type-var]
        token = uuid.uuid4().hex[:12]
        finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        pending: dict[str, Any] = {}  # key -> future of a job not finished yet
        index: dict[str, int] = {}
        shared_future: Any = None
        scatter_s = 0.0
        out: dict[int, R] = {}
        seconds: dict[int, float] = {}

        def submit(todo: list[int], attempt: int) -> None:
            nonlocal shared_future, scatter_s
            if shared is not None:
                t = time.perf_counter()
                shared_future = self._scatter(shared, n_done=len(out), n_jobs=len(jobs))
                scatter_s += time.perf_counter() - t
            for i in todo:
                key = f"miaudit-job-{token}-{i}-{attempt}"
                fut = client.submit(_run_job, fn, sent[i], shared_future, key=key, pure=False)
                index[key], pending[key] = i, fut
                fut.add_done_callback(finished.put)  # called from the client's thread as each job ends

        submit(list(range(len(jobs))), 0)
        health = _Health()
        attempt = 0
        try:
            while pending:
                try:
                    fut = finished.get(timeout=_POLL_S)
                except queue.Empty:
                    self._check_health(health, n_done=len(out), n_jobs=len(jobs))
                    continue
                if fut.key not in pending:
                    continue  # a job of an earlier attempt
                i = index[fut.key]
                if fut.status == "cancelled" and client.status == "running" and attempt < _MAX_RESUBMITS:
                    # every worker holding the shared records was lost: send them again, rerun what is left
                    attempt += 1
                    todo = sorted(index[k] for k in pending)
                    logger.warning("the Dask cluster lost the records sent to it; resending them, rerunning %d jobs",
                                   len(todo))  # fmt: skip
                    client.cancel(list(pending.values()))
                    pending.clear()
                    self._wait_for_workers(n_done=len(out), n_jobs=len(jobs))
                    submit(todo, attempt)
                    continue
                del pending[fut.key]
                out[i], seconds[i] = self._result(fut, jobs[i], i, n_done=len(out), n_jobs=len(jobs))
                if on_done is not None:
                    on_done(i, out[i])
        finally:
            if pending:
                client.cancel(list(pending.values()))
            if shared_future is not None:
                shared_future.release()
        record = MapRecord(
            n_jobs=len(jobs),
            shared_bytes=shared.nbytes if shared is not None else 0,
            job_bytes=sum(_nbytes(j) for j in sent),
            result_bytes=sum(_nbytes(r) for r in out.values()),
            wall_s=time.perf_counter() - t0,
            scatter_s=scatter_s,
            job_s=tuple(seconds[i] for i in range(len(jobs))),
        )
        self.records.append(record)
        logger.debug("ran %d jobs on %r in %.2f s", len(jobs), self, record.wall_s)
        return [out[i] for i in range(len(jobs))]

    def _scatter(self, shared: _Shared, *, n_done: int, n_jobs: int) -> Any:
        """Send the shared fields to every worker once; the future that jobs reference."""
        try:
            return self._client.scatter(shared, broadcast=True, hash=False)
        except (OSError, TimeoutError) as exc:
            raise TrainingError(
                f"could not send the records to the Dask workers of {self.address} ({exc}; {n_done} of {n_jobs} "
                f"jobs had finished): the cluster has no workers or lost the connection; start workers "
                f"(`dask worker {self.address} --nthreads 1`) and run the command again (finished models are in "
                "the cache)"
            ) from None

    def _result(self, fut: Any, job: Any, i: int, *, n_done: int, n_jobs: int) -> tuple[Any, float]:
        """A finished future's (result, seconds); the job's own exception, or a TrainingError for cluster faults."""
        from distributed.scheduler import KilledWorker

        if fut.status == "cancelled":
            raise TrainingError(
                f"the Dask scheduler at {self.address} dropped job {i} ({n_done} of {n_jobs} jobs had finished): the "
                "connection to it was lost, it restarted, or its workers kept losing the records sent to them; "
                "check the scheduler and run the command again (finished models are in the cache)"
            )
        try:
            result, seconds = fut.result()
        except KilledWorker as exc:
            models = getattr(job, "positions", None)
            which = f" (models at positions {list(models)})" if models is not None else ""
            raise TrainingError(
                f"job {i}{which} killed every Dask worker that ran it ({exc}); most often a worker runs out of "
                "memory: give the workers more memory (`dask worker --memory-limit`) or fewer threads each"
            ) from None
        return result, seconds

    def _check_health(self, health: _Health, *, n_done: int, n_jobs: int) -> None:
        """Raise once the cluster has had no worker, or no scheduler connection, for ``no_workers_timeout``."""
        now = time.monotonic()
        resume = f"{n_done} of {n_jobs} jobs had finished; finished models are in the cache, so a rerun resumes"
        if self._client.status != "running":
            if now - health.connected_seen > self.no_workers_timeout:
                raise TrainingError(
                    f"lost the connection to the Dask scheduler at {self.address} for more than "
                    f"{self.no_workers_timeout:g} s ({resume}); restart the scheduler and its workers and run the "
                    "command again"
                )
            return
        health.connected_seen = now
        try:
            n = len(self._client.nthreads())
        except (OSError, TimeoutError):
            return
        if n:
            health.workers_seen = now
        elif now - health.workers_seen > self.no_workers_timeout:
            raise TrainingError(self._no_workers_message(n_done, n_jobs))


def executor_for(scheduler: str | None, workers: int | None) -> DaskExecutor | None:
    """The run's executor: a :class:`DaskExecutor` for a scheduler address or a worker count, else None.

    None means the engine's default, the in-process executor. The DaskExecutor connects on first use.
    """
    if scheduler is None and workers is None:
        return None
    return DaskExecutor(scheduler, workers=workers)
