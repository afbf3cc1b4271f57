"""Synthetic stored results in the format of docs/run-format.md, for the report tests.

``write_run`` writes a small but complete ``miaudit reproduce`` run directory: all six studies,
a few seeds, plausible numbers (overfitting raises the attack's AUC, dropout and more training
data lower it), and per-record scores drawn from two normal distributions. The metrics in
results.csv are computed from those scores, so tables, ROC curves and histograms agree.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from miaudit.metrics import mean_ci, membership_metrics
from miaudit.report import build_report

ATTACK_MODELS = ("lr", "tree", "linear-svm", "rbf-svm")
BASE = {"attack_model": "linear-svm", "n_shadows": 6, "target_size": 3000, "classes": 10, "arch": "simple"}


def setting_id(study: str, s: dict[str, Any]) -> str:
    """The id ``miaudit.studies.study.Setting.setting_id`` gives, e.g. ``s1-lr-n4-t3000-c10-simple``."""
    sid = f"s{study}-{s['attack_model']}-n{s['n_shadows']}-t{s['target_size']}-c{s['classes']}-{s['arch']}"
    return sid + (f"-sh-{s['shadow_arch']}" if s.get("shadow_arch", s["arch"]) != s["arch"] else "")


# The seed paper's published numbers (Tables 1-4), keyed (study, setting changes, metric).
PAPER: dict[tuple[str, str], float] = {}


def _paper(study: str, metric: str, value: float, **kw: Any) -> None:
    PAPER[(setting_id(study, {**BASE, **kw}), metric)] = value


for _am, _vals in {
    "lr": (0.6451, 0.6021, 0.6102, 0.6451),
    "tree": (0.6397, 0.6182, 0.5860, 0.6370),
    "rbf-svm": (0.6263, 0.6102, 0.6720, 0.6290),
    "linear-svm": (0.6021, 0.5913, 0.6962, 0.6129),
}.items():
    for _k, _v in zip(range(4, 8), _vals, strict=True):
        _paper("1", "accuracy", _v, attack_model=_am, n_shadows=_k)
_paper("1", "precision", 0.6237, n_shadows=6)
_paper("1", "recall", 0.9892, n_shadows=6)
for _k, _a, _b in zip(
    range(4, 9), (0.6021, 0.5913, 0.6370, 0.6129, 0.6102), (0.5054, 0.5869, 0.6331, 0.6114, 0.5054), strict=True
):
    _paper("3", "accuracy", _a, target_size=3000, n_shadows=_k)
    _paper("3", "accuracy", _b, target_size=6000, n_shadows=_k)
for _k, _a, _b in zip(
    range(2, 10),
    (0.6370, 0.6370, 0.6075, 0.6344, 0.6263, 0.6370, 0.6263, 0.6317),
    (0.5725, 0.5672, 0.5779, 0.5000, 0.5967, 0.5698, 0.6102, 0.5860),
    strict=True,
):
    _paper("5", "accuracy", _a, arch="dense", n_shadows=_k)
    _paper("5", "accuracy", _b, arch="dropout", n_shadows=_k)

# As in configs/study*.toml: title, paper reference, grid, and the grid of --quick.
STUDIES: dict[str, dict[str, Any]] = {
    "1": {"title": "Attack model x number of shadow models", "paper_ref": "Table 1, Table 2",
          "grid": {"attack_model": list(ATTACK_MODELS), "n_shadows": [4, 5, 6, 7]},
          "quick": {"attack_model": list(ATTACK_MODELS), "n_shadows": [4, 6]}},
    "2": {"title": "Number of shadow models", "paper_ref": "Figure 1",
          "grid": {"n_shadows": list(range(2, 10))}, "quick": {"n_shadows": [2, 4, 6]}},
    "3": {"title": "Target training size", "paper_ref": "Table 3",
          "grid": {"target_size": [1500, 3000, 6000, 12000], "n_shadows": [4, 5, 6, 7, 8]},
          "quick": {"target_size": [1000, 2000], "n_shadows": [4, 6]}},
    "4": {"title": "Number of classes", "paper_ref": "Figure 2",
          "grid": {"classes": [2, 3, 5, 10], "n_shadows": [4, 5, 6, 7, 8]},
          "quick": {"classes": [2, 5, 10], "n_shadows": [4, 6]}},
    "5": {"title": "Overfitting (dense network) vs dropout", "paper_ref": "Table 4, Figure 3",
          "grid": {"arch": ["simple", "dense", "dropout"], "n_shadows": list(range(2, 10))},
          "quick": {"arch": ["simple", "dense", "dropout"], "n_shadows": [2, 4, 6]}},
    "6": {"title": "Mismatched shadow architecture", "paper_ref": "Section 6 (future work)",
          "grid": {"arch": ["simple", "dense"], "shadow_arch": ["simple", "dense"]},
          "quick": {"arch": ["simple", "dense"], "shadow_arch": ["simple", "dense"]}},
}  # fmt: skip


def settings(studies: Iterable[str] = STUDIES, *, quick: bool = False) -> list[dict[str, Any]]:
    """Every setting of the chosen studies: the setting columns, ``study`` and ``setting_id``."""
    import itertools

    out = []
    for study in studies:
        grid = STUDIES[study]["quick" if quick else "grid"]
        for values in itertools.product(*grid.values()):
            s = {**BASE, **dict(zip(grid, values, strict=True))}
            if quick:
                s["target_size"] = s["target_size"] if "target_size" in grid else 1000
            s.setdefault("shadow_arch", s["arch"])
            out.append({"study": study, "setting_id": setting_id(study, s), **s})
    return out


def _effects(s: dict[str, Any], rng: np.random.Generator) -> tuple[float, float, float]:
    """(train accuracy, test accuracy, separation of member and non-member scores) of one seed."""
    gap = {"simple": 0.12, "dense": 0.22, "dropout": 0.05}[s["arch"]]
    gap *= math.sqrt(3000 / s["target_size"]) * (s["classes"] / 10) ** 0.7
    gap = max(0.005, gap + rng.normal(0, 0.01))
    train = min(0.999, 0.97 + rng.normal(0, 0.005))
    sep = 3.5 * gap * (0.9 + 0.02 * s["n_shadows"])
    sep *= {"lr": 0.95, "tree": 0.85, "rbf-svm": 1.0, "linear-svm": 1.0}[s["attack_model"]]
    sep *= 1.0 if s["arch"] == s["shadow_arch"] or s["study"] != "6" else 0.8
    return train, train - gap, max(0.0, sep + rng.normal(0, 0.03))


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in r.items()})


SETTING_COLS = ("attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")
RESULT_COLS = ("study", "setting_id", "seed", *SETTING_COLS, "metric", "value")
SUMMARY_COLS = ("study", "setting_id", *SETTING_COLS, "metric", "mean", "low", "high", "std", "n", "paper")


def write_run(
    path: Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    studies: Iterable[str] = STUDIES,
    n: int = 300,
    quick: bool = False,
    status: str = "complete",
) -> Path:
    """Write a complete synthetic run directory at ``path`` and return it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "scores").mkdir(exist_ok=True)
    studies = list(studies)
    results: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for si, s in enumerate(settings(studies, quick=quick)):
        arrays: dict[str, np.ndarray] = {}
        per_metric: dict[str, list[float]] = {}
        for seed in seeds:
            rng = np.random.default_rng([seed, si, 7])
            train, test, sep = _effects(s, rng)
            member, nonmember = rng.normal(sep, 1.0, n), rng.normal(0.0, 1.0, n)
            arrays[f"member_seed{seed}"], arrays[f"nonmember_seed{seed}"] = member, nonmember
            y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
            m = membership_metrics(y, np.r_[member, nonmember], threshold=sep / 2)
            values = {k: v for k, v in m.items() if k != "tpr_at_fpr"}
            values |= {f"tpr_at_fpr_{k}": v for k, v in m["tpr_at_fpr"].items()}
            values |= {"target_train_accuracy": train, "target_test_accuracy": test, "generalization_gap": train - test}
            for metric, value in values.items():
                results.append({**s, "seed": seed, "metric": metric, "value": float(value)})
                per_metric.setdefault(metric, []).append(float(value))
        np.savez(path / "scores" / f"{s['setting_id']}.npz", **arrays)
        for metric, vals in per_metric.items():
            ci = mean_ci(vals)
            if metric not in ("advantage", "generalization_gap", "n_members", "n_nonmembers") and ci["n"] > 1:
                ci["low"], ci["high"] = max(0.0, ci["low"]), min(1.0, ci["high"])  # as the producer clips
            summary.append({**s, "metric": metric, **ci, "paper": PAPER.get((s["setting_id"], metric))})
    _write_csv(path / "results.csv", RESULT_COLS, results)
    _write_csv(path / "summary.csv", SUMMARY_COLS, summary)
    (path / "findings.json").write_text(json.dumps(findings(studies, len(seeds)), indent=1))
    manifest = {
        "format": 1,
        "status": status,
        "created": "2026-11-28T12:00:00+00:00",
        "finished": "2026-11-28T12:41:07+00:00",
        "command": f"miaudit reproduce --seeds {len(seeds)} --out {path}" + (" --quick" if quick else ""),
        "config": {  # as ReproduceConfig.model_dump(mode="json") writes it
            "quick": quick,
            "seeds": len(seeds),
            "first_seed": seeds[0],
            "rbf_max_samples": 10000,
            "studies": [{"id": sid, **STUDIES[sid], "base": {"arch": "simple"}} for sid in studies],
        },
        "seeds": list(seeds),
        "versions": {
            "miaudit": "0.1.0",
            "python": "3.11.2",
            "torch": "2.13.0+cpu",
            "numpy": "2.4.6",
            "scikit-learn": "1.9.1",
            "platform": "Linux-x86_64",
        },
        "hardware": {"cpu": "Synthetic CPU @ 2.0GHz", "cores": 2, "memory_gb": 24.0, "bf16_native": True},
        "timings": {
            "total_s": 2467.0,
            "training_s": 2100.5,
            "attack_fit_s": 300.25,
            "evaluation_s": 66.0,
            "models_trained": 420,
            "models_from_cache": 96,
            "attacks_run": 288,
            "attacks_from_cache": 0,
        },
        "studies": {sid: {k: STUDIES[sid][k] for k in ("title", "paper_ref")} for sid in studies},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path


def findings(studies: Sequence[str], n_seeds: int) -> list[dict[str, Any]]:
    """Findings as ``miaudit.studies.findings.compute_findings`` writes them, with each kind of verdict."""
    catalogue = [
        ("F1", "1", "Table 1", "6 shadow models with a linear SVM give the highest attack accuracy",
         "linear SVM with 6 shadows minus the best other pair (rbf-svm, 7 shadows)", -0.004, -0.02, 0.012, 0.5,
         "not supported"),
        ("F1b", "1", "Section 5.1", "the RBF-kernel SVM and the linear SVM perform comparably",
         "RBF SVM minus linear SVM, mean over shadow counts (margin ±0.02)", 0.003, -0.008, 0.014, 0.4, "supported"),
        ("F2", "2", "Figure 1", "more shadow models raise attack accuracy",
         "slope of accuracy per added shadow model, shadows 2-9", 0.002, 0.0004, 0.0036, 0.03, "supported"),
        ("F3", "3", "Table 3", "more training data (6,000 vs 3,000) lowers attack accuracy",
         "target size 6000 minus 3000, mean over shadow counts", -0.04, -0.06, -0.02, 0.01, "supported"),
        ("F4", "4", "Figure 2", "fewer classes (5 vs 10) lower attack accuracy",
         "5 classes minus 10 classes, mean over shadow counts", -0.05, -0.07, -0.03, 0.004, "supported"),
        ("F5a", "5", "Section 5.5", "an overfitted (dense) target leaks more than the simple network",
         "dense minus simple target, mean over shadow counts", 0.06, 0.04, 0.08, 0.002, "supported"),
        ("F5b", "5", "Table 4, Figure 3", "dropout lowers attack accuracy against the dense network",
         "dropout minus dense target, mean over shadow counts", -0.08, -0.1, -0.06, 0.001, "supported"),
        ("F6", "6", "Section 6 (future work)",
         "shadows trained with another architecture than the target's <em>lower</em> attack accuracy",
         "mismatched minus matched shadow architecture, mean over targets", 0.01, 0.002, 0.02, 0.04, "contradicted"),
    ]  # fmt: skip
    out = []
    for fid, study, ref, claim, comp, diff, low, high, p, verdict in catalogue:
        if study not in studies:
            continue
        if n_seeds < 2:
            low = high = p = None
            verdict = "inconclusive"
        ci = "" if low is None else f", 95% CI [{low:+.3f}, {high:+.3f}]"
        auc = {
            "difference": diff * 1.5,
            "low": None if low is None else low * 1.5,
            "high": None if high is None else high * 1.5,
            "n": n_seeds,
            "p_value": p,
            "verdict": verdict,
        }
        out.append(
            {
                "id": fid,
                "study": study,
                "paper_ref": ref,
                "claim": claim,
                "metric": "accuracy",
                "comparison": comp,
                "direction": -1 if diff < 0 else 1,
                "difference": diff,
                "low": low,
                "high": high,
                "n": n_seeds,
                "p_value": p,
                "verdict": verdict,
                "auc": auc,
                "sentence": f"{claim}: {verdict} (difference {diff:+.3f}{ci}, {n_seeds} seeds)",
            }
        )
    return out


def compare_record(*, seeds: Sequence[int] = (0, 1, 2), n: int = 200) -> dict[str, Any]:
    """A ``miaudit compare --json`` record with three attacks."""
    attacks: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    for ai, (name, sep) in enumerate((("shokri", 0.6), ("threshold", 0.5), ("lira", 1.1))):
        per: dict[str, list[float]] = {}
        scores[name] = {}
        for seed in seeds:
            rng = np.random.default_rng([seed, ai, 11])
            mem, non = rng.normal(sep, 1, n), rng.normal(0, 1, n)
            scores[name][str(seed)] = {"member": mem.tolist(), "nonmember": non.tolist()}
            m = membership_metrics(np.r_[np.ones(n), np.zeros(n)], np.r_[mem, non], threshold=sep / 2)
            for k, v in m.items():
                if k == "tpr_at_fpr":
                    for level, t in v.items():
                        per.setdefault(f"tpr:{level}", []).append(t)
                else:
                    per.setdefault(k, []).append(float(v))
        rec: dict[str, Any] = {"tpr_at_fpr": {}}
        for k, vals in per.items():
            if k.startswith("tpr:"):
                rec["tpr_at_fpr"][k[4:]] = mean_ci(vals)
            else:
                rec[k] = mean_ci(vals)
        attacks[name] = rec
    return {
        "config": {"dataset": "fashion-mnist", "target_size": 3000},
        "seeds": list(seeds),
        "attacks": attacks,
        "scores": scores,
    }


def attack_record(*, n: int = 300, seed: int = 3) -> dict[str, Any]:
    """A ``miaudit attack --json`` record, as ``miaudit.studies.pipeline.run_attack`` returns it."""
    rng = np.random.default_rng(seed)
    mem, non = rng.normal(0.8, 1, n), rng.normal(0, 1, n)
    metrics = membership_metrics(np.r_[np.ones(n), np.zeros(n)], np.r_[mem, non], threshold=0.4)
    return {
        "config": {
            "dataset": "fashion-mnist",
            "classes": None,
            "target_size": n,
            "shadows": 6,
            "arch": "simple",
            "attack": "shokri",
            "attack_model": "linear-svm",
            "per_class": False,
            "seed": seed,
        },
        "dataset": {"name": "fashion-mnist", "n_records": 70000, "n_classes": 10},
        "target": {
            "arch": "simple",
            "n_train": n,
            "train_accuracy": 0.97,
            "test_accuracy": 0.84,
            "generalization_gap": 0.13,
        },
        "attack": {"name": "shokri"},
        "metrics": metrics,
        "queries": 2 * n,
        "timings": {"load_data": 0.4, "train_target": 3.2, "fit_attack": 9.1, "score": 0.1, "total": 13.0},
        "versions": {"miaudit": "0.1.0", "python": "3.11.2"},
        "scores": {"member": mem.tolist(), "nonmember": non.tolist()},
    }


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete synthetic run: six studies, three seeds, with a compare.json."""
    path = write_run(tmp_path_factory.mktemp("run") / "full")
    (path / "compare.json").write_text(json.dumps(compare_record()))
    return path


@pytest.fixture(scope="session")
def built(run_dir: Path) -> dict[str, Path]:
    """The report of ``run_dir``, built once for the session (HTML and Markdown)."""
    return build_report(run_dir)


@pytest.fixture
def broken_run(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the complete run (without its report), for tests that damage it."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*", "figures"))
    return copy


@pytest.fixture(scope="session")
def make_run() -> Callable[..., Path]:
    """``write_run``: writes a synthetic run directory (keywords: seeds, studies, n, quick, status)."""
    return write_run


@pytest.fixture(scope="session")
def make_compare() -> Callable[..., dict[str, Any]]:
    """``compare_record``: a ``miaudit compare --json`` record."""
    return compare_record


@pytest.fixture(scope="session")
def make_attack() -> Callable[..., dict[str, Any]]:
    """``attack_record``: a ``miaudit attack --json`` record."""
    return attack_record
