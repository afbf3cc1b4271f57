"""Verdict logic on synthetic results with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.studies.findings import compute_findings, verdict


def _rows(study: str, cells: dict[tuple, float], *, seeds: int = 5, noise: float = 0.005, seed: int = 0):
    """Tidy accuracy rows: cell = (attack_model, n_shadows, target_size, classes, arch, shadow_arch)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (am, n, t, c, a, sa), value in cells.items():
        for s in range(seeds):
            v = value + rng.normal(0, noise)
            for metric in ("accuracy", "auc"):
                rows.append(dict(study=study, seed=s, attack_model=am, n_shadows=n, target_size=t, classes=c,
                                 arch=a, shadow_arch=sa, metric=metric, value=v))  # fmt: skip
    return rows


def test_verdict_directions() -> None:
    assert verdict([0.05, 0.04, 0.06], direction=+1)["verdict"] == "supported"
    assert verdict([0.05, 0.04, 0.06], direction=-1)["verdict"] == "contradicted"
    assert verdict([0.01, -0.01, 0.005, -0.004], direction=+1)["verdict"] == "not supported"
    assert verdict([0.05], direction=+1)["verdict"] == "inconclusive"
    assert verdict([0.001, -0.002, 0.0015], direction=0)["verdict"] == "supported"
    assert verdict([0.10, 0.12, 0.11], direction=0)["verdict"] == "contradicted"
    v = verdict([-0.05, -0.04, -0.06], direction=-1)
    # mean -0.05, sd 0.01, t(0.975, 2) = 4.303: half-width 4.303 * 0.01 / sqrt(3) = 0.02484
    assert v["difference"] == pytest.approx(-0.05)
    assert v["low"] == pytest.approx(-0.07484, abs=1e-4)
    assert v["high"] == pytest.approx(-0.02516, abs=1e-4)


def test_training_size_finding_detects_a_known_drop() -> None:
    cells = {("linear-svm", n, t, 10, "simple", "simple"): (0.60 if t == 3000 else 0.55)
             for n in range(4, 9) for t in (3000, 6000)}  # fmt: skip
    (f,) = compute_findings(_rows("3", cells))
    assert f["id"] == "F3" and f["verdict"] == "supported"
    assert f["difference"] == pytest.approx(-0.05, abs=0.01)
    assert f["sentence"].startswith(
        "more training data (6,000 vs 3,000) lowers attack accuracy: supported (difference -0.0"
    )
    flat = {k: 0.6 for k in cells}
    (g,) = compute_findings(_rows("3", flat, noise=0.01))
    assert g["verdict"] == "not supported"
    rising = {k: (0.60 if k[2] == 3000 else 0.66) for k in cells}
    (h,) = compute_findings(_rows("3", rising))
    assert h["verdict"] == "contradicted"


def test_shadow_count_slope_and_classes_and_dropout() -> None:
    cells = {("linear-svm", n, 3000, 10, "simple", "simple"): 0.5 + 0.01 * n for n in range(2, 10)}
    (f,) = compute_findings(_rows("2", cells))
    assert f["id"] == "F2" and f["verdict"] == "supported"
    assert f["difference"] == pytest.approx(0.01, abs=0.002)

    cls = {("linear-svm", n, 3000, c, "simple", "simple"): (0.62 if c == 10 else 0.53) for n in (4, 5) for c in (5, 10)}
    (g,) = compute_findings(_rows("4", cls))
    assert g["id"] == "F4" and g["verdict"] == "supported"

    arch = {("linear-svm", n, 3000, 10, a, a): {"simple": 0.55, "dense": 0.63, "dropout": 0.57}[a]
            for n in (2, 3) for a in ("simple", "dense", "dropout")}  # fmt: skip
    f5 = {f["id"]: f for f in compute_findings(_rows("5", arch))}
    assert f5["F5a"]["verdict"] == "supported" and f5["F5b"]["verdict"] == "supported"


def test_best_pair_and_mismatch() -> None:
    cells = {(am, n, 3000, 10, "simple", "simple"): 0.55 for am in ("lr", "linear-svm") for n in (4, 6)}
    cells[("linear-svm", 6, 3000, 10, "simple", "simple")] = 0.65
    f1 = {f["id"]: f for f in compute_findings(_rows("1", cells))}
    assert f1["F1"]["verdict"] == "supported"
    assert "F1b" not in f1  # no RBF SVM in these results
    mism = {("linear-svm", 6, 3000, 10, a, s): (0.6 if a == s else 0.5)
            for a in ("simple", "dense") for s in ("simple", "dense")}  # fmt: skip
    (f6,) = compute_findings(_rows("6", mism))
    assert f6["verdict"] == "supported" and f6["difference"] == pytest.approx(-0.1, abs=0.01)


def test_missing_studies_are_left_out() -> None:
    assert compute_findings([]) == []
