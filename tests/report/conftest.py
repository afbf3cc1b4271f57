"""Run directories in the format of docs/run-format.md (format 2), written by the tests themselves.

``write_run`` writes a complete run directory from a list of settings: results.csv, summary.csv,
findings.json, scores/<setting_id>.npz and manifest.json, as `miaudit reproduce`, `miaudit compare
--out` and `miaudit attack --out` write them. Numbers are plausible (overfitting and a stronger
attack raise the AUC; dropout and more training data lower it) and consistent: each seed's metrics
in results.csv are computed from the very scores stored in scores/, and summary.csv aggregates
results.csv. Every draw comes from a generator seeded by (seed, setting), so runs are reproducible.

Fixtures: ``run_dir`` (the six studies of the seed paper, 3 seeds, with findings), ``repro_run``
(two studies, one of which varies the attack, with findings), ``compare_run`` (3 attacks x 3 seeds),
``attack_run`` (one attack, one seed), and ``broken_run`` (a private copy of ``repro_run`` to damage).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from miaudit.metrics import membership_metrics
from miaudit.report import build_report

ATTACK_MODELS = ("lr", "tree", "linear-svm", "rbf-svm")
BASE = {
    "attack": "shokri",
    "attack_model": "linear-svm",
    "n_shadows": 6,
    "target_size": 3000,
    "classes": 10,
    "arch": "simple",
}
SETTING_COLS = ("attack", "attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")
RESULT_COLS = ("study", "setting_id", "seed", *SETTING_COLS, "metric", "value")
SUMMARY_COLS = ("study", "setting_id", *SETTING_COLS, "metric", "mean", "low", "high", "std", "n", "paper")
#: How well each attack separates members (relative to the Shokri attack), and its cost.
ATTACKS: dict[str, dict[str, Any]] = {
    "shokri": {"strength": 1.0, "attack_model": "linear-svm", "n_shadows": 6, "queries_per_record": 1, "time": 9.0},
    "loss": {"strength": 0.8, "attack_model": "", "n_shadows": None, "queries_per_record": 1, "time": 0.05},
    "lira": {"strength": 1.6, "attack_model": "", "n_shadows": 8, "queries_per_record": 2, "time": 30.0},
}


def setting_id(study: str, s: dict[str, Any]) -> str:
    """A stable id, e.g. ``s1-shokri-lr-n4-t3000-c10-simple`` (also the scores file's name)."""
    sid = (
        f"s{study}-{s['attack']}-{s['attack_model'] or 'none'}-n{s['n_shadows'] or 0}-t{s['target_size']}"
        f"-c{s['classes']}-{s['arch']}"
    )
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
    """Every setting of the seed paper's chosen studies (Shokri attack): setting columns, ``study``, ``setting_id``."""
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


def attack_settings(study: str, attacks: Sequence[str], **target: Any) -> list[dict[str, Any]]:
    """One setting per attack on the same target (``target`` overrides the base target's columns)."""
    out = []
    for name in attacks:
        spec = ATTACKS[name]
        s = {**BASE, **target, "attack": name, "attack_model": spec["attack_model"], "n_shadows": spec["n_shadows"]}
        s.setdefault("shadow_arch", s["arch"])
        out.append({"study": study, "setting_id": setting_id(study, s), **s})
    return out


def _target(s: dict[str, Any], seed: int) -> tuple[float, float]:
    """(train accuracy, test accuracy) of the target of a setting and seed: the same for every attack on it."""
    key = [seed, s["target_size"], s["classes"], ("simple", "dense", "dropout").index(s["arch"])]
    rng = np.random.default_rng(key)
    gap = {"simple": 0.12, "dense": 0.22, "dropout": 0.05}[s["arch"]]
    gap *= math.sqrt(3000 / s["target_size"]) * (s["classes"] / 10) ** 0.7
    gap = max(0.005, gap + rng.normal(0, 0.01))
    train = min(0.999, 0.97 + rng.normal(0, 0.005))
    return train, train - gap


def _separation(s: dict[str, Any], gap: float, rng: np.random.Generator) -> float:
    """How far the members' scores sit above the non-members' (in units of their spread)."""
    sep = 3.5 * gap * ATTACKS[s["attack"]]["strength"]
    if s["attack"] == "shokri":
        sep *= (0.9 + 0.02 * s["n_shadows"]) * {"lr": 0.95, "tree": 0.85, "rbf-svm": 1.0, "linear-svm": 1.0}[
            s["attack_model"]
        ]
        sep *= 1.0 if s["arch"] == s["shadow_arch"] or s["study"] != "6" else 0.8
    return max(0.0, sep + rng.normal(0, 0.03))


def _cell(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """A CSV file with a header row; None and NaN as empty cells."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})


#: Metrics whose values lie in [0, 1]: their intervals are clipped to it, as the producer does.
BOUNDED = frozenset({"accuracy", "precision", "recall", "balanced_accuracy", "auc", "tpr_at_fpr_0.01",
                     "tpr_at_fpr_0.001", "tpr_at_fpr_0", "target_train_accuracy", "target_test_accuracy"})  # fmt: skip


def aggregate(values: Sequence[float], *, bounded: bool = False) -> dict[str, Any]:
    """Mean, 95% Student-t interval (none with fewer than 3 seeds), std and n, as summary.csv holds them."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    low = high = math.nan
    if x.size >= 3:
        half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
        low, high = mean - half, mean + half
        if bounded:
            low, high = max(0.0, low), min(1.0, high)
    return {"mean": mean, "low": low, "high": high, "std": std, "n": int(x.size)}


def write_run(
    path: Path,
    runs: Sequence[dict[str, Any]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    n: int = 300,
    kind: str = "reproduce",
    studies: dict[str, dict[str, str]] | None = None,
    findings: list[dict[str, Any]] | None = None,
    status: str = "complete",
    paper: dict[tuple[str, str], float] | None = None,
) -> Path:
    """Write a complete run directory for the settings ``runs`` at ``path`` and return it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "scores").mkdir(exist_ok=True)
    results: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for si, s in enumerate(runs):
        arrays: dict[str, np.ndarray] = {}
        per_metric: dict[str, list[float]] = {}
        for seed in seeds:
            rng = np.random.default_rng([seed, si, 7])
            train, test = _target(s, seed)
            sep = _separation(s, train - test, rng)
            member, nonmember = rng.normal(sep, 1.0, n), rng.normal(0.0, 1.0, n)
            arrays[f"member_seed{seed}"], arrays[f"nonmember_seed{seed}"] = member, nonmember
            y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
            m = membership_metrics(y, np.r_[member, nonmember], threshold=sep / 2)
            values = {k: v for k, v in m.items() if k != "tpr_at_fpr"}
            values |= {f"tpr_at_fpr_{k}": v for k, v in m["tpr_at_fpr"].items()}
            values |= {"target_train_accuracy": train, "target_test_accuracy": test, "generalization_gap": train - test}
            spec = ATTACKS[s["attack"]]
            values["queries"] = 2 * n * spec["queries_per_record"]
            values["attack_time_s"] = spec["time"] * float(rng.uniform(0.8, 1.2))
            for metric, value in values.items():
                results.append({**s, "seed": seed, "metric": metric, "value": float(value)})
                per_metric.setdefault(metric, []).append(float(value))
        np.savez(path / "scores" / f"{s['setting_id']}.npz", **arrays)
        for metric, vals in per_metric.items():
            row = aggregate(vals, bounded=metric in BOUNDED)
            summary.append({**s, "metric": metric, **row, "paper": (paper or {}).get((s["setting_id"], metric))})
    write_csv(path / "results.csv", RESULT_COLS, results)
    write_csv(path / "summary.csv", SUMMARY_COLS, summary)
    (path / "findings.json").write_text(json.dumps(findings or [], indent=1))
    study_ids = list(dict.fromkeys(s["study"] for s in runs))
    info = studies or {sid: {"title": f"Study {sid}", "paper_ref": "", "description": ""} for sid in study_ids}
    manifest = {
        "format": 2,
        "kind": kind,
        "status": status,
        "created": "2026-11-28T12:00:00+00:00",
        "finished": "2026-11-28T12:41:07+00:00",
        "command": f"miaudit {kind} --seeds {len(seeds)} --out {path}",
        "config": {"dataset": "fashion-mnist", "seeds": len(seeds), "first_seed": seeds[0], "rbf_max_samples": 10000},
        "seeds": list(seeds),
        "versions": {"miaudit": "0.1.0", "python": "3.11.2", "torch": "2.13.0+cpu", "numpy": "2.4.6"},
        "hardware": {"cpu": "Synthetic CPU @ 2.0GHz", "cores": 2, "memory_gb": 24.0, "bf16_native": True},
        "timings": {"total_s": 2467.0, "training_s": 2100.5, "models_trained": 420, "attacks_run": 288},
        "studies": info,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path


def paper_findings(studies: Sequence[str], n_seeds: int) -> list[dict[str, Any]]:
    """Findings as ``miaudit.studies.findings`` writes them (format 2), with every kind of verdict."""
    catalogue = [
        ("F1", "1", "Table 1", "6 shadow models with a linear SVM give the highest attack accuracy",
         "linear SVM with 6 shadows minus the best other pair (rbf-svm, 7 shadows)", -0.004, -0.02, 0.012, 0.5,
         0.01, 40, "inconclusive"),
        ("F1b", "1", "Section 5.1", "the RBF-kernel SVM and the linear SVM perform comparably",
         "RBF SVM minus linear SVM, mean over shadow counts", 0.003, -0.008, 0.014, 0.4, 0.02, None, "supported"),
        ("F2", "2", "Figure 1", "more shadow models raise attack accuracy",
         "slope of accuracy per added shadow model, shadows 2-9", 0.0002, -0.0004, 0.0008, 0.3, 0.002, 7,
         "negligible"),
        ("F3", "3", "Table 3", "more training data (6,000 vs 3,000) lowers attack accuracy",
         "target size 6000 minus 3000, mean over shadow counts", -0.04, -0.06, -0.02, 0.01, 0.01, None, "supported"),
        ("F4", "4", "Figure 2", "fewer classes (5 vs 10) lower attack accuracy",
         "5 classes minus 10 classes, mean over shadow counts", -0.05, -0.07, -0.03, 0.004, 0.01, None, "supported"),
        ("F5a", "5", "Section 5.5", "an overfitted (dense) target leaks more than the simple network",
         "dense minus simple target, mean over shadow counts", 0.06, 0.04, 0.08, 0.002, 0.01, None, "supported"),
        ("F5b", "5", "Table 4, Figure 3", "dropout lowers attack accuracy against the dense network",
         "dropout minus dense target, mean over shadow counts", -0.08, -0.1, -0.06, 0.001, 0.01, None, "supported"),
        ("F6", "6", "Section 6 (future work)",
         "shadows trained with another architecture than the target's <em>lower</em> attack accuracy",
         "mismatched minus matched shadow architecture, mean over targets", 0.03, 0.02, 0.04, 0.04, 0.01, None,
         "contradicted"),
    ]  # fmt: skip
    out = []
    for fid, study, ref, claim, comp, diff, low, high, p, margin, needed, verdict in catalogue:
        if study not in studies:
            continue
        if n_seeds < 3:
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
                "margin": margin,
                "seeds_needed": needed,
                "verdict": verdict,
                "auc": auc,
                "sentence": f"{claim}: {verdict} (difference {diff:+.3f}{ci}, margin {margin}, {n_seeds} seeds)",
            }
        )
    return out


def write_paper_run(
    path: Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    studies: Iterable[str] = STUDIES,
    n: int = 300,
    quick: bool = False,
    status: str = "complete",
) -> Path:
    """A `miaudit reproduce` run of the seed paper's studies (Shokri attack only), with the paper's values."""
    studies = list(studies)
    info = {sid: {"title": STUDIES[sid]["title"], "paper_ref": STUDIES[sid]["paper_ref"], "description": ""}
            for sid in studies}  # fmt: skip
    return write_run(
        path,
        settings(studies, quick=quick),
        seeds=seeds,
        n=n,
        studies=info,
        findings=paper_findings(studies, len(seeds)),
        status=status,
        paper=PAPER,
    )


ATTACK_STUDY = {"title": "Attacks on the simple network", "paper_ref": "",
                "description": "Which attack leaks most from the same target?"}  # fmt: skip


def write_repro_run(path: Path, *, seeds: Sequence[int] = (0, 1, 2), n: int = 200) -> Path:
    """A `miaudit reproduce` run of two studies: study 1 (quick grid, Shokri only) and study 7, varying the attack."""
    runs = settings(["1"], quick=True) + attack_settings("7", ("shokri", "loss", "lira"), target_size=1000)
    info = {
        "1": {"title": STUDIES["1"]["title"], "paper_ref": STUDIES["1"]["paper_ref"], "description": ""},
        "7": ATTACK_STUDY,
    }
    return write_run(path, runs, seeds=seeds, n=n, studies=info, findings=paper_findings(["1"], len(seeds)))


def write_compare_run(path: Path, *, seeds: Sequence[int] = (0, 1, 2), n: int = 200) -> Path:
    """A `miaudit compare --out` run: three attacks on the same targets."""
    info = {"compare": {"title": "Attack comparison", "paper_ref": "", "description": "Attacks on the same targets."}}
    runs = attack_settings("compare", ("shokri", "loss", "lira"))
    return write_run(path, runs, seeds=seeds, n=n, kind="compare", studies=info)


def write_attack_run(path: Path, *, attack: str = "shokri", seed: int = 3, n: int = 300) -> Path:
    """A `miaudit attack --out` run: one attack on one target, one seed."""
    info = {"attack": {"title": f"{attack} attack", "paper_ref": "", "description": ""}}
    return write_run(path, attack_settings("attack", (attack,)), seeds=(seed,), n=n, kind="attack", studies=info)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed paper's six studies, three seeds, with findings."""
    return write_paper_run(tmp_path_factory.mktemp("run") / "full")


@pytest.fixture(scope="session")
def built(run_dir: Path) -> dict[str, Path]:
    """The report of ``run_dir``, built once for the session (HTML and Markdown)."""
    return build_report(run_dir)


@pytest.fixture(scope="session")
def repro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two studies (one varies the attack), three seeds, with findings."""
    return write_repro_run(tmp_path_factory.mktemp("repro") / "run")


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three attacks x three seeds (kind "compare")."""
    return write_compare_run(tmp_path_factory.mktemp("compare") / "run")


@pytest.fixture(scope="session")
def attack_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One attack, one seed (kind "attack")."""
    return write_attack_run(tmp_path_factory.mktemp("attack") / "run")


@pytest.fixture
def broken_run(repro_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``repro_run`` (without its report), for tests that damage it."""
    copy = tmp_path / "run"
    shutil.copytree(repro_run, copy, ignore=shutil.ignore_patterns("report*", "figures"))
    return copy


@pytest.fixture(scope="session")
def make_run() -> Callable[..., Path]:
    """``write_run``: a run directory from a list of settings."""
    return write_run


@pytest.fixture(scope="session")
def make_paper_run() -> Callable[..., Path]:
    """``write_paper_run``: the seed paper's studies (keywords: seeds, studies, n, quick, status)."""
    return write_paper_run


def read_summary_csv(run: Path) -> list[dict[str, str]]:
    """summary.csv as text rows, to check a report's cells against the file itself."""
    with (run / "summary.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def summary_of() -> Callable[[Path], list[dict[str, str]]]:
    """``read_summary_csv``: a run's summary.csv as text rows."""
    return read_summary_csv


@pytest.fixture(scope="session")
def make_compare_run() -> Callable[..., Path]:
    """``write_compare_run``: three attacks on the same targets (keywords: seeds, n)."""
    return write_compare_run


@pytest.fixture(scope="session")
def make_attack_run() -> Callable[..., Path]:
    """``write_attack_run``: one attack, one seed (keywords: attack, seed, n)."""
    return write_attack_run
