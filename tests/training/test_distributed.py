"""The Dask executor: same models as in process, faults, versions, errors (loopback clusters only).

Every cluster here listens on 127.0.0.1 and is closed by the test or fixture that started it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'miaudit[dask]'")

from miaudit.errors import ConfigError, TrainingError
from miaudit.training import distributed as dist
from miaudit.training.distributed import DaskExecutor, check_worker_versions
from miaudit.training.engine.orchestration import train_batched
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


@pytest.fixture(scope="module")
def cluster() -> DaskExecutor:
    """A local cluster of two worker processes, one thread each, shared by this module's tests."""
    ex = DaskExecutor(workers=2)
    ex.start()
    yield ex
    ex.close()


def _problem(digits, n_models: int, n_train: int = 300, seed: int = 0):
    X, y = digits
    rng = np.random.default_rng(seed)
    sets = [rng.choice(len(X), n_train, replace=False) for _ in range(n_models)]
    seeds = [int(s) for s in rng.integers(0, 2**31, n_models)]
    return X, y, sets, seeds, ModelSpec.from_arch("simple", n_features=64, n_classes=10)


def _assert_bitwise(a, b) -> None:
    assert len(a) == len(b)
    for ma, mb in zip(a, b, strict=True):
        for wa, wb in zip(ma.weights + ma.biases, mb.weights + mb.biases, strict=True):
            assert wa.dtype == wb.dtype and np.array_equal(wa, wb)


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_two_workers_train_the_same_models_as_in_process_bitwise(cluster: DaskExecutor, digits, precision) -> None:
    X, y, sets, seeds, spec = _problem(digits, 6)
    train = TrainSpec(epochs=4, precision=precision, engine="batched")
    # one in-process thread: one chunk of six models; the cluster: two chunks of three, on other processes
    here = train_models(X, y, sets, seeds=seeds, model=spec, train=train, executor=InProcessExecutor(1))
    done: list[tuple[int, int]] = []
    there = train_models(X, y, sets, seeds=seeds, model=spec, train=train, executor=cluster,
                         progress=lambda d, t: done.append((d, t)))  # fmt: skip
    _assert_bitwise(here, there)
    assert done == [(3, 6), (6, 6)]  # each finished chunk reported as it arrived
    record = cluster.records[-1]
    assert record.n_jobs == 2 and len(record.job_s) == 2 and all(s > 0 for s in record.job_s)
    # the pool and its labels went once (scattered), not inside each job: the jobs carry their index arrays
    n_used = len(np.unique(np.concatenate(sets)))
    width = spec.n_features + 1
    assert record.shared_bytes == n_used * width * (2 if precision == "bf16" else 4) + n_used * 8
    assert record.job_bytes == sum(s.nbytes for s in sets)
    assert record.result_bytes == sum(a.nbytes for m in there for a in m.weights + m.biases)


def test_jobs_run_with_one_torch_thread_on_the_workers_and_errors_come_back(cluster: DaskExecutor) -> None:
    assert isinstance(cluster, Executor) and cluster.n_workers == 2
    assert "n_workers=2" in repr(cluster) and cluster.address.startswith("tcp://127.0.0.1:")
    out = cluster.map(lambda x: (x * x, torch.get_num_threads(), os.getpid()), list(range(5)))
    assert [r[0] for r in out] == [0, 1, 4, 9, 16]
    assert {r[1] for r in out} == {1}
    assert os.getpid() not in {r[2] for r in out}
    assert cluster.map(lambda x: x, []) == []

    def fail_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("job three failed")
        return x

    with pytest.raises(ValueError, match="job three failed"):
        cluster.map(fail_on_three, list(range(6)))


def test_connecting_to_a_running_scheduler_checks_every_workers_versions(cluster: DaskExecutor, monkeypatch) -> None:
    with DaskExecutor(cluster.address) as ex:
        assert ex.n_workers == 2
        assert ex.map(lambda x: x + 1, [1, 2]) == [2, 3]
    # one worker reports another miaudit: the error names that worker and no other
    pids = cluster.client.run(os.getpid)
    odd = sorted(pids)[1]
    odd_pid = pids[odd]
    real = dist.worker_versions

    def reported() -> dict[str, str]:  # runs on every worker (sent by value), and here
        got = real()
        return {**got, "miaudit": "0.0.1"} if os.getpid() == odd_pid else got

    monkeypatch.setattr(dist, "worker_versions", reported)
    ex = DaskExecutor(cluster.address)
    with pytest.raises(TrainingError, match=rf"worker {odd} runs miaudit 0\.0\.1 \(here [0-9.]+\)") as err:
        ex.start()
    assert sorted(pids)[0] not in str(err.value)
    assert ex._client is None  # the failed connection was closed


def test_version_check_names_what_differs_and_what_to_install() -> None:
    local = {"miaudit": "1.0", "torch": "2.13.0", "native": "adam compiled"}
    check_worker_versions({"tcp://a:1": dict(local)}, local)
    with pytest.raises(TrainingError, match=r"worker tcp://b:2 runs torch 2\.12\.0 \(here 2\.13\.0\).*torch==2\.13\.0"):
        check_worker_versions({"tcp://a:1": dict(local), "tcp://b:2": {**local, "torch": "2.12.0"}}, local)
    with pytest.raises(TrainingError, match=r"worker tcp://c:3 could not report its versions \(ModuleNotFoundError"):
        check_worker_versions({"tcp://c:3": ModuleNotFoundError("No module named 'miaudit'")}, local)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    ex = DaskExecutor(address, connect_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(TrainingError, match=rf"could not reach the Dask scheduler at {address} within 2 s.*dask sched"):
        ex.start()
    assert time.monotonic() - t0 < 2 + 8
    assert "not connected" in repr(ex)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs exactly one of scheduler"),
        ({"scheduler": "tcp://127.0.0.1:8786", "workers": 2}, "needs exactly one of scheduler"),
        ({"scheduler": "127.0.0.1:8786"}, "scheduler must be a Dask scheduler address like tcp://HOST:8786"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"workers": True}, "workers must be a positive integer"),
        ({"workers": 1, "connect_timeout": 0}, "connect_timeout must be a positive number of seconds"),
        ({"workers": 1, "no_workers_timeout": -1.0}, "no_workers_timeout must be a positive number of seconds"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DaskExecutor(**kwargs)


def test_the_loop_engine_takes_no_executor(digits) -> None:
    X, y, sets, seeds, spec = _problem(digits, 1)
    with pytest.raises(ConfigError, match="the loop engine trains one model at a time in this process"):
        train_models(X, y, sets, seeds=seeds, model=spec, train=TrainSpec(engine="loop"), executor=InProcessExecutor())


def test_shared_fields_are_those_every_job_holds_as_the_same_array() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Job:
        pool: np.ndarray
        own: np.ndarray
        n: int

    pool = np.zeros(4)
    jobs = [Job(pool, np.ones(2), 1), Job(pool, np.ones(2), 2)]
    assert dist._shared_fields(jobs) == ["pool"]
    assert dist._shared_fields(jobs[:1]) == []  # one job: nothing to share
    assert dist._shared_fields([Job(pool, np.ones(2), 1), Job(pool.copy(), np.ones(2), 2)]) == []
    packed = dist._Shared.pack({"t": torch.arange(6, dtype=torch.bfloat16), "a": np.arange(3)})
    back = packed.unpack()
    assert back["t"].dtype == torch.bfloat16 and torch.equal(back["t"], torch.arange(6, dtype=torch.bfloat16))
    assert np.array_equal(back["a"], np.arange(3)) and packed.nbytes == 6 * 2 + 3 * 8


def test_a_worker_killed_mid_job_has_its_job_rerun_with_the_same_numbers(digits) -> None:
    X, y, sets, seeds, spec = _problem(digits, 8, n_train=600, seed=1)
    train = TrainSpec(epochs=800, precision="f32", engine="batched")
    budget = 4 * 2**20  # small chunks: several jobs per worker
    here = train_batched(X, y, sets, seeds=seeds, model=spec, train=train, executor=InProcessExecutor(2),
                         memory_budget_bytes=budget)  # fmt: skip
    with DaskExecutor(workers=2) as ex:
        client = ex.client
        pids = client.run(os.getpid)
        killed: list[int] = []

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if any("miaudit-job" in str(k) for k in keys)]
                if busy:  # a one-thread worker with a job assigned is running it: kill it now, mid-job
                    killed.append(pids[busy[0]])
                    os.kill(pids[busy[0]], signal.SIGKILL)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        there = train_batched(X, y, sets, seeds=seeds, model=spec, train=train, executor=ex,
                              memory_budget_bytes=budget)  # fmt: skip
        killer.join(timeout=5)
        assert killed, "no worker was busy to kill"
        assert ex.records[-1].n_jobs >= 3  # several jobs per worker: the killed one had others to rerun
        assert killed[0] not in client.run(os.getpid).values()  # the nanny started a new worker in its place
        _assert_bitwise(here, there)

        # then the cluster loses every worker mid-run: an error within the stated timeout, naming the fix
        ex.no_workers_timeout = 1.5

        def retire_all() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(client.processing().values()):
                time.sleep(0.05)
            ex._cluster.scale(0)

        threading.Thread(target=retire_all, daemon=True).start()
        t0 = time.monotonic()
        with pytest.raises(TrainingError, match=r"has had no workers for more than 1\.5 s .*a rerun resumes"):
            train_batched(X, y, sets, seeds=seeds, model=spec, train=train, executor=ex, memory_budget_bytes=budget)
        assert time.monotonic() - t0 < 30
    assert ex._client is None and ex._cluster is None


class _FakeFuture:
    def __init__(self, status: str, exc: BaseException | None = None) -> None:
        self.status, self._exc = status, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return "ok", 1.5


def test_cluster_faults_in_a_result_become_training_errors_naming_the_job() -> None:
    from distributed.scheduler import KilledWorker

    from miaudit.training.engine.planning import ChunkJob

    ex = DaskExecutor("tcp://127.0.0.1:1")
    job = ChunkJob(pool=None, labels=None, train_sets=(), seeds=(), positions=(4, 9), model=None, train=None,
                   precision="f32")  # type: ignore[arg-type]  # fmt: skip
    assert ex._result(_FakeFuture("finished"), job, 0, n_done=0, n_jobs=1) == ("ok", 1.5)
    with pytest.raises(TrainingError, match=r"dropped job 2 \(1 of 3 jobs had finished\).*run the command again"):
        ex._result(_FakeFuture("cancelled"), job, 2, n_done=1, n_jobs=3)
    from types import SimpleNamespace

    killed = KilledWorker("miaudit-job-x", SimpleNamespace(address="tcp://127.0.0.1:5"), 3)
    with pytest.raises(TrainingError, match=r"job 1 \(models at positions \[4, 9\]\) killed every Dask worker.*memory"):
        ex._result(_FakeFuture("error", killed), job, 1, n_done=0, n_jobs=2)
    with pytest.raises(ValueError, match="the job's own error"):  # a job's own exception is raised as it is
        ex._result(_FakeFuture("error", ValueError("the job's own error")), job, 0, n_done=0, n_jobs=1)


class _FakeClient:
    """Stands in for a distributed.Client whose scheduler is unreachable or has no workers."""

    def __init__(self, status: str = "running", n_workers: int = 0) -> None:
        from types import SimpleNamespace

        self.status, self.n_workers = status, n_workers
        self.scheduler = SimpleNamespace(address="tcp://127.0.0.1:1")

    def wait_for_workers(self, n: int, timeout: float) -> None:
        raise TimeoutError(f"only {self.n_workers} workers after {timeout} s")

    def nthreads(self) -> dict[str, int]:
        return {f"tcp://w:{i}": 1 for i in range(self.n_workers)}

    def scatter(self, *args, **kwargs):
        raise OSError("Timed out trying to connect")


def test_no_workers_a_lost_connection_and_a_failed_scatter_are_errors_within_the_timeout() -> None:
    ex = DaskExecutor("tcp://127.0.0.1:1", no_workers_timeout=2)
    ex._client = _FakeClient()
    with pytest.raises(TrainingError, match=r"has no workers after 2 s; start them .*dask worker tcp://127\.0\.0\.1:1"):
        ex._wait_for_workers()
    with pytest.raises(TrainingError, match=r"no workers for more than 2 s \(all were lost; 3 of 5 jobs had finished"):
        ex._wait_for_workers(n_done=3, n_jobs=5)
    with pytest.raises(TrainingError, match=r"could not send the records .*Timed out trying to connect"):
        ex._scatter(dist._Shared.pack({"a": np.zeros(2)}), n_done=0, n_jobs=2)
    now = time.monotonic()
    healthy = dist._Health(workers_seen=now, connected_seen=now)
    ex._check_health(healthy, n_done=0, n_jobs=2)  # no workers for less than the timeout: keep waiting
    with pytest.raises(TrainingError, match=r"has had no workers for more than 2 s"):
        ex._check_health(dist._Health(workers_seen=now - 3, connected_seen=now), n_done=0, n_jobs=2)
    ex._client = _FakeClient(status="connecting")
    ex._check_health(dist._Health(workers_seen=now, connected_seen=now), n_done=1, n_jobs=2)
    with pytest.raises(TrainingError, match=r"lost the connection to the Dask scheduler .* for more than 2 s"):
        ex._check_health(dist._Health(workers_seen=now, connected_seen=now - 3), n_done=1, n_jobs=2)
    ex._client = _FakeClient(n_workers=2)
    ex._check_health(dist._Health(workers_seen=now - 3, connected_seen=now - 3), n_done=0, n_jobs=2)
    ex._client = None
