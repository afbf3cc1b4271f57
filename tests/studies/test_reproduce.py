"""`miaudit reproduce` on tiny digits studies: outputs, caching, resume after a kill, determinism."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from miaudit.studies.cache import Cache
from miaudit.studies.reproduce import reproduce
from miaudit.studies.runner import StudyRunner, target_pool_size
from miaudit.studies.study import ReproduceConfig, load_studies

TINY = Path(__file__).parent / "configs_tiny"


def _config(seeds: int = 2) -> ReproduceConfig:
    return ReproduceConfig(studies=tuple(load_studies(config_dir=TINY)), seeds=seeds)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    manifest = reproduce(_config(), out, engine="loop")
    return out, manifest


def test_run_directory_is_complete(tiny_run) -> None:
    out, manifest = tiny_run
    for name in ("manifest.json", "results.csv", "summary.csv", "findings.json"):
        assert (out / name).is_file(), name
    assert manifest["status"] == "complete"
    assert manifest["seeds"] == [0, 1]
    assert {"total_s", "training_s", "attack_fit_s", "evaluation_s"} <= set(manifest["timings"])
    assert {"cpu", "cores", "bf16_native", "native_kernels"} <= set(manifest["hardware"])
    assert manifest["hardware"]["native_kernels"].startswith("adam ")  # says which kernels trained the models
    rows = list(csv.DictReader((out / "results.csv").open()))
    # 4 + 3 settings x 2 seeds, each with every metric
    assert len({(r["setting_id"], r["seed"]) for r in rows}) == 14
    metrics = {r["metric"] for r in rows}
    assert {"accuracy", "precision", "recall", "auc", "tpr_at_fpr_0.001", "generalization_gap"} <= metrics
    n_members = {float(r["value"]) for r in rows if r["metric"] == "n_members"}
    assert n_members == {200.0}
    summary = list(csv.DictReader((out / "summary.csv").open()))
    acc = [r for r in summary if r["metric"] == "accuracy"]
    assert all(float(r["low"]) <= float(r["mean"]) <= float(r["high"]) for r in acc)
    scores = np.load(out / "scores" / "s2-linear-svm-n3-t200-c10-simple.npz", allow_pickle=False)
    assert sorted(scores.files) == ["member_seed0", "member_seed1", "nonmember_seed0", "nonmember_seed1"]
    assert scores["member_seed0"].shape == (200,)
    findings = json.loads((out / "findings.json").read_text())
    assert [f["id"] for f in findings] == ["F2"]  # study 1 here has no 6-shadow linear SVM nor an RBF SVM


def test_shadows_are_shared_across_counts_and_studies(tiny_run) -> None:
    _, manifest = tiny_run
    # per seed: 1 target + 4 shadows (counts 2-4 reuse the first shadows; study 2 reuses study 1's)
    assert manifest["timings"]["models_trained"] == 2 * 5
    # study 2's 2- and 3-shadow linear SVMs are study 1's evaluations
    assert manifest["timings"]["attacks_from_cache"] == 2 * 2


def test_second_run_trains_nothing_and_gives_the_same_numbers(tiny_run, tmp_path) -> None:
    out, _ = tiny_run
    again = tmp_path / "again"
    manifest = reproduce(_config(), again, cache_dir=out / "cache", engine="loop")
    assert manifest["timings"]["models_trained"] == 0
    assert manifest["timings"]["attacks_run"] == 0
    assert (again / "results.csv").read_text() == (out / "results.csv").read_text()


def test_other_seeds_give_other_numbers(tiny_run, tmp_path) -> None:
    out, _ = tiny_run
    cfg = ReproduceConfig(studies=tuple(load_studies(["2"], config_dir=TINY)), seeds=1, first_seed=7)
    reproduce(cfg, tmp_path, engine="loop")
    ours = {
        r["setting_id"]: r["value"] for r in csv.DictReader((tmp_path / "results.csv").open()) if r["metric"] == "auc"
    }
    first = {r["setting_id"]: r["value"] for r in csv.DictReader((out / "results.csv").open())
             if r["metric"] == "auc" and r["seed"] == "0"}  # fmt: skip
    assert ours.keys() == {k for k in first if k.startswith("s2")}
    assert ours != {k: first[k] for k in ours}


def test_resume_after_kill_gives_the_same_numbers(tiny_run, tmp_path) -> None:
    out, _ = tiny_run
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "miaudit.cli", "reproduce", "--config-dir", str(TINY), "--seeds", "2",
           "--out", str(run), "--engine", "loop", "--no-report"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
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
    assert not list((run / "cache").rglob("*.tmp"))  # no half-written entries are left behind as entries
    finished = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr
    resumed = json.loads((run / "manifest.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["timings"]["models_trained"] == 0  # all models were done before the kill
    assert resumed["timings"]["attacks_from_cache"] >= 1
    assert (run / "results.csv").read_text() == (out / "results.csv").read_text()


def test_target_pool_and_too_large_target(tmp_path) -> None:
    assert target_pool_size(1797) == 539
    from miaudit.errors import DataError
    from miaudit.studies.study import StudyConfig

    study = StudyConfig(id="1", title="t", base={"dataset": "digits", "target_size": 600, "shadow_train_size": 50,
                                                 "shadow_test_size": 20})  # fmt: skip
    runner = StudyRunner(ReproduceConfig(studies=(study,), seeds=1), cache=Cache(tmp_path))
    with pytest.raises(DataError, match="asks for 600 target members.*reserves only 539"):
        runner.run()


def test_corrupt_cache_entry_is_recomputed(tiny_run, tmp_path) -> None:
    out, _ = tiny_run
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    victim = sorted((cache / "attacks").iterdir())[0]
    victim.write_bytes(b"garbage")
    manifest = reproduce(_config(), tmp_path / "r", cache_dir=cache, engine="loop")
    assert manifest["timings"]["attacks_run"] == 1
    assert (tmp_path / "r" / "results.csv").read_text() == (out / "results.csv").read_text()
