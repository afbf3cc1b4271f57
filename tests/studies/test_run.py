"""Run directories of tiny digits studies: outputs, sharing, caching, resume after a kill, interruption."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.studies.conftest import TINY_CONFIGS

from miaudit.errors import DataError
from miaudit.studies.cache import Cache
from miaudit.studies.run import run_studies
from miaudit.studies.schema import RunSpec, StudyConfig, load_studies


def _run(out: Path, cache: Path, *, seeds: int = 2, first_seed: int = 0, ids: list[str] | None = None):
    run = RunSpec(seeds=seeds, first_seed=first_seed, engine="loop")
    return run_studies(load_studies(ids, config_dir=TINY_CONFIGS), run, out, cache=Cache(cache))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return _run(root / "out", root / "cache"), root


def test_run_directory_is_complete(tiny_run) -> None:
    _, root = tiny_run
    out = root / "out"
    for name in ("manifest.json", "results.csv", "summary.csv", "findings.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["format"] == 2 and manifest["kind"] == "reproduce"
    assert manifest["seeds"] == [0, 1]
    assert {"total_s", "training_s", "attack_fit_s", "evaluation_s"} <= set(manifest["timings"])
    assert {"cpu", "cores", "bf16_native", "native_kernels"} <= set(manifest["hardware"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    # 4 + 3 settings x 2 seeds, each with every metric
    assert len({(r["setting_id"], r["seed"]) for r in rows}) == 14
    assert {r["attack"] for r in rows} == {"shokri"}
    metrics = {r["metric"] for r in rows}
    assert {"accuracy", "auc", "tpr_at_fpr_0.001", "generalization_gap", "queries", "attack_time_s"} <= metrics
    assert {float(r["value"]) for r in rows if r["metric"] == "n_members"} == {200.0}
    assert {float(r["value"]) for r in rows if r["metric"] == "queries"} == {400.0}
    summary = list(csv.DictReader((out / "summary.csv").open()))
    acc = [r for r in summary if r["metric"] == "accuracy"]
    assert acc and all(r["low"] == "" and r["n"] == "2" for r in acc)  # two seeds: no interval is claimed
    sid = "s2-shokri-linear-svm-n3-t200-call-simple"
    (sid_full,) = {r["setting_id"] for r in rows if r["setting_id"].startswith(sid)}
    scores = np.load(out / "scores" / f"{sid_full}.npz", allow_pickle=False)
    assert sorted(scores.files) == ["member_seed0", "member_seed1", "nonmember_seed0", "nonmember_seed1"]
    assert scores["member_seed0"].shape == (200,)
    auc = {(r["setting_id"], r["seed"]): float(r["value"]) for r in rows if r["metric"] == "auc"}
    from miaudit.metrics import auc as auc_of

    expected = auc_of(np.r_[np.ones(200), np.zeros(200)], np.r_[scores["member_seed1"], scores["nonmember_seed1"]])
    assert auc[(sid_full, "1")] == pytest.approx(expected, abs=1e-12)
    findings = json.loads((out / "findings.json").read_text())
    assert [f["id"] for f in findings] == ["F2"]  # study 1 here has no 6-shadow linear SVM nor an RBF SVM


def test_shadows_are_shared_across_counts_and_studies(tiny_run) -> None:
    result, _ = tiny_run
    t = result.manifest["timings"]
    # per seed: 1 target + 4 shadows (counts 2-4 reuse the first shadows; study 2 reuses study 1's)
    assert t["models_trained"] == 2 * 5
    # study 2's 2- and 3-shadow linear SVMs are study 1's evaluations
    assert t["attacks_from_cache"] == 2 * 2


def test_second_run_trains_nothing_and_gives_the_same_numbers(tiny_run, tmp_path) -> None:
    _, root = tiny_run
    again = _run(tmp_path / "again", root / "cache")
    assert again.manifest["timings"]["models_trained"] == 0
    assert again.manifest["timings"]["attacks_run"] == 0
    assert (tmp_path / "again" / "results.csv").read_text() == (root / "out" / "results.csv").read_text()


def test_other_seeds_give_other_numbers(tiny_run, tmp_path) -> None:
    _, root = tiny_run
    _run(tmp_path / "o", tmp_path / "c", seeds=1, first_seed=7, ids=["2"])
    ours = {r["setting_id"]: r["value"] for r in csv.DictReader((tmp_path / "o" / "results.csv").open())
            if r["metric"] == "auc"}  # fmt: skip
    first = {r["setting_id"]: r["value"] for r in csv.DictReader((root / "out" / "results.csv").open())
             if r["metric"] == "auc" and r["seed"] == "0"}  # fmt: skip
    assert ours.keys() == {k for k in first if k.startswith("s2")}
    assert ours != {k: first[k] for k in ours}


def test_resume_after_kill_gives_the_same_numbers(tiny_run, tmp_path) -> None:
    _, root = tiny_run
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "miaudit.cli", "reproduce", "--config-dir", str(TINY_CONFIGS), "--seeds", "2",
           "--out", str(run), "--cache-dir", str(tmp_path / "cache"), "--engine", "loop", "--no-report"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    killed = False
    for line in proc.stderr:  # plain progress lines: one per finished unit
        if "attacks" in line and "/14" in line and not line.rstrip().endswith(" 0/14"):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        if time.monotonic() > deadline:
            break
    proc.wait(timeout=60)
    assert killed, "the run finished before it could be interrupted"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert not (run / "results.csv").exists()
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no half-written entries are left behind
    finished = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr
    resumed = json.loads((run / "manifest.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["timings"]["attacks_from_cache"] >= 1
    assert _numbers(run / "results.csv") == _numbers(root / "out" / "results.csv")


def _numbers(path: Path) -> list[str]:
    """results.csv without its timing rows (the only ones a recomputed evaluation may change)."""
    return [line for line in path.read_text().splitlines() if ",attack_time_s," not in line]


def test_corrupt_cache_entry_is_recomputed(tiny_run, tmp_path) -> None:
    _, root = tiny_run
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    victim = sorted((cache / "evals").iterdir())[0]
    victim.write_bytes(b"garbage")
    result = _run(tmp_path / "r", cache)
    assert result.manifest["timings"]["attacks_run"] == 1
    assert _numbers(tmp_path / "r" / "results.csv") == _numbers(root / "out" / "results.csv")


def test_an_error_marks_the_run_interrupted_and_keeps_finished_work(tmp_path) -> None:
    ok = {"dataset": "digits", "target_size": 200, "shadow_train_size": 100, "shadow_test_size": 60,
          "n_shadows": 2, "train": {"epochs": 5}}  # fmt: skip
    study = StudyConfig(id="z", title="t", base=ok, grid={"target_size": [200, 600]})
    with pytest.raises(DataError, match="asks for 600 target members"):
        run_studies([study], RunSpec(engine="loop"), tmp_path / "run", cache=Cache(tmp_path / "cache"))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert "asks for 600 target members" in manifest["error"]
