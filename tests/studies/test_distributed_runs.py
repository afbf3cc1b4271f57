"""Runs on a Dask cluster: the CLI options reach the RunSpec, the numbers equal in-process ones, a failed
cluster run resumes from the cache. Clusters listen on 127.0.0.1 and are stopped when the run ends."""

from __future__ import annotations

import numpy as np
import pytest
from tests.studies.conftest import tiny
from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.errors import ConfigError, TrainingError
from miaudit.studies import experiment as experiment_mod
from miaudit.studies import run as run_mod
from miaudit.studies.cache import Cache
from miaudit.studies.experiment import Experiment
from miaudit.studies.schema import RunSpec, parse_config
from miaudit.training.executors import InProcessExecutor

runner = CliRunner()

SMALL = ["--dataset", "digits", "--target-size", "150", "--epochs", "5", "--no-report"]


class _Captured(Exception):
    pass


@pytest.fixture
def captured_run(monkeypatch) -> list[RunSpec]:
    """Stop the commands at run_studies / Experiment.run and keep the RunSpec they built."""
    seen: list[RunSpec] = []

    def run_studies(studies, run, *args, **kwargs):
        seen.append(run)
        raise _Captured

    def experiment_run(self, settings, seeds):
        seen.append(self.run_spec)
        raise _Captured

    monkeypatch.setattr(run_mod, "run_studies", run_studies)
    monkeypatch.setattr(Experiment, "run", experiment_run)
    return seen


@pytest.mark.parametrize(
    ("command", "env", "scheduler", "workers"),
    [
        (["compare", *SMALL, "--scheduler", "tcp://127.0.0.1:8786"], {}, "tcp://127.0.0.1:8786", None),
        (["compare", *SMALL, "--workers", "3"], {}, None, 3),
        (["compare", *SMALL], {"MIAUDIT_SCHEDULER": "tcp://10.0.0.5:8786"}, "tcp://10.0.0.5:8786", None),
        (["compare", *SMALL], {}, None, None),
        (["attack", "--attack", "loss", *SMALL[:-1], "--workers", "2"], {}, None, 2),
        (["attack", "--attack", "loss", *SMALL[:-1], "--scheduler", "tls://h:1"], {}, "tls://h:1", None),
        (["reproduce", "--studies", "1", "--quick", "--scheduler", "tcp://h:8786", "--no-report"], {}, "tcp://h:8786",
         None),
        (["reproduce", "--studies", "1", "--quick", "--workers", "4", "--no-report"], {}, None, 4),
    ],
)  # fmt: skip
def test_cli_options_route_into_the_run_spec(captured_run, monkeypatch, command, env, scheduler, workers) -> None:
    monkeypatch.delenv("MIAUDIT_SCHEDULER", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    res = runner.invoke(app, command)
    assert isinstance(res.exception, _Captured), res.output
    (run,) = captured_run
    assert (run.scheduler, run.workers) == (scheduler, workers)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "tcp://h:8786", "--workers", "2"], "give either scheduler .* or workers .*, not both"),
        (["--workers", "2", "--engine", "loop"], "engine 'loop' trains one model at a time in this process"),
        (["--scheduler", "h:8786"], "scheduler must be a Dask scheduler address like tcp://HOST:8786"),
        (["--workers", "0"], r"workers: Input should be greater than or equal to 1"),
    ],
)
def test_bad_cluster_options_are_rejected(captured_run, monkeypatch, extra, message) -> None:
    monkeypatch.delenv("MIAUDIT_SCHEDULER", raising=False)
    res = runner.invoke(app, ["compare", *SMALL, *extra])
    assert res.exit_code == 2 and not captured_run
    assert "invalid RunSpec" in res.output
    with pytest.raises(ConfigError, match=message):
        parse_config(RunSpec, {"scheduler": None, "workers": None} | _as_fields(extra))


def _as_fields(extra: list[str]) -> dict:
    pairs = dict(zip(extra[::2], extra[1::2], strict=True))
    out: dict = {k.removeprefix("--"): v for k, v in pairs.items()}
    if "workers" in out:
        out["workers"] = int(out["workers"])
    return out


def _scores(evaluations) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(e.setting.setting_id, e.member_scores, e.nonmember_scores) for e in evaluations]


def test_a_local_cluster_gives_the_in_process_numbers_and_a_cached_rerun_does_not_connect(tmp_path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'miaudit[dask]'")
    settings = [tiny(attack="lira", n_refs=4), tiny(attack="loss")]
    here = Experiment(RunSpec(engine="batched"), cache=Cache(tmp_path / "here")).run(settings, [0])
    ex = Experiment(RunSpec(engine="batched", workers=2), cache=Cache(tmp_path / "there"))
    there = ex.run(settings, [0])
    assert ex.stats.models_trained == 1 + 3 + 4  # target, shadows (loss calibrates on 3), references
    assert ex.executor is not None and ex.executor.records and ex.executor._client is None  # used, then closed
    for (sid, m1, n1), (sid2, m2, n2) in zip(_scores(here), _scores(there), strict=True):
        assert sid == sid2 and np.array_equal(m1, m2) and np.array_equal(n1, n2)
    # the model files are the same bytes: a cache filled on a cluster serves in-process runs and back
    files = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here" / "models").iterdir())
    assert files == sorted(p.relative_to(tmp_path / "there") for p in (tmp_path / "there" / "models").iterdir())
    assert all((tmp_path / "here" / f).read_bytes() == (tmp_path / "there" / f).read_bytes() for f in files)
    again = Experiment(RunSpec(engine="batched", workers=2), cache=Cache(tmp_path / "there"))
    assert _scores(again.run(settings, [0]))[0][0] == _scores(there)[0][0]
    assert again.stats.models_trained == 0 and again.executor is not None and not again.executor.records


class _FailingExecutor(InProcessExecutor):
    """Trains the first two calls in process (the target, two references), then fails like a cluster that lost
    every worker."""

    def __init__(self) -> None:
        super().__init__(n_workers=1)
        self.calls = 0
        self.closed = False

    def map(self, fn, jobs, *, on_done=None):
        self.calls += 1
        if self.calls > 2:
            raise TrainingError("the Dask cluster at tcp://x:1 has had no workers for more than 60 s")
        return super().map(fn, jobs, on_done=on_done)

    def close(self) -> None:
        self.closed = True


def test_a_run_that_loses_its_cluster_resumes_from_the_cache(tmp_path, monkeypatch) -> None:
    failing = _FailingExecutor()
    monkeypatch.setattr(experiment_mod, "executor_for", lambda scheduler, workers: failing if workers else None)
    monkeypatch.setattr(experiment_mod, "TRAIN_CHUNK", 2)  # two models per call and checkpoint
    monkeypatch.setattr(experiment_mod, "MAX_CHUNK", 1)
    settings = [tiny(attack="lira", n_refs=4)]
    cache = Cache(tmp_path / "cache")
    first = Experiment(RunSpec(engine="batched", workers=1), cache=cache)
    with pytest.raises(TrainingError, match="has had no workers for more than 60 s"):
        first.run(settings, [0])
    assert failing.closed and first.stats.models_trained == 3  # two checkpoints written before the failure
    resumed = Experiment(RunSpec(engine="batched"), cache=cache)
    evs = resumed.run(settings, [0])
    assert resumed.stats.models_trained == 2 and resumed.stats.models_from_cache == 3
    clean = Experiment(RunSpec(engine="batched"), cache=Cache(tmp_path / "clean")).run(settings, [0])
    assert np.array_equal(evs[0].member_scores, clean[0].member_scores)
    assert np.array_equal(evs[0].nonmember_scores, clean[0].nonmember_scores)


def test_models_per_call_is_checked(tmp_path) -> None:
    from miaudit.studies.cache import CachingTrainer

    with pytest.raises(ValueError, match="chunk_size must be a positive integer or a callable returning one"):
        CachingTrainer(None, chunk_size=0)
    trainer = CachingTrainer(None, chunk_size=lambda: 0)
    X = np.zeros((4, 64), np.float32)
    with pytest.raises(ValueError, match="chunk_size must give a positive integer; got 0"):
        trainer(X, np.zeros(4, np.int64), [np.arange(4)], seeds=[0], model=_spec(), train=_recipe())


def _spec():
    from miaudit.training.specs import ModelSpec

    return ModelSpec.from_arch("simple", n_features=64, n_classes=10)


def _recipe():
    from miaudit.training.specs import TrainSpec

    return TrainSpec(epochs=1)
