"""Verdicts on the seed paper's findings, computed from our per-seed results.

Each finding becomes a per-seed difference (for example attack accuracy at 6,000 minus at 3,000
target records, averaged over shadow counts 4-8). Over seeds, its mean and 95% Student-t interval
give the verdict: ``supported`` when the interval excludes 0 on the side the paper claims,
``contradicted`` when it excludes 0 on the other side, ``not supported`` when it includes 0, and
``inconclusive`` with fewer than two seeds. No verdict is written by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from scipy import stats

from miaudit.metrics import mean_ci
from miaudit.studies.paper import FINDINGS

__all__ = ["EQUIVALENCE_MARGIN", "compute_findings", "verdict"]

Row = Mapping[str, Any]
#: |difference| below which two settings count as "comparable" (finding F1b)
EQUIVALENCE_MARGIN = 0.02


def verdict(diffs: Iterable[float], *, direction: int) -> dict[str, Any]:
    """Mean, 95% interval, p-value and verdict of per-seed differences for a claimed sign.

    Parameters
    ----------
    diffs : iterable of float
        One difference per seed.
    direction : {+1, -1, 0}
        The sign the claim predicts; 0 claims equivalence within :data:`EQUIVALENCE_MARGIN`.

    >>> verdict([-0.05, -0.04, -0.06], direction=-1)["verdict"]
    'supported'
    >>> verdict([0.01, -0.01, 0.02, -0.02], direction=-1)["verdict"]
    'not supported'
    """
    d = np.asarray(list(diffs), dtype=float)
    d = d[np.isfinite(d)]
    ci = mean_ci(d) if len(d) else {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    out: dict[str, Any] = {"difference": ci["mean"], "low": ci["low"], "high": ci["high"], "n": len(d)}
    if len(d) < 2:
        out.update(p_value=float("nan"), verdict="inconclusive")
        return out
    p = (1.0 if d[0] == 0 else 0.0) if np.all(d == d[0]) else float(stats.ttest_1samp(d, 0.0).pvalue)
    out["p_value"] = p
    low, high = ci["low"], ci["high"]
    if direction == 0:
        if low > -EQUIVALENCE_MARGIN and high < EQUIVALENCE_MARGIN:
            v = "supported"
        elif low > EQUIVALENCE_MARGIN or high < -EQUIVALENCE_MARGIN:
            v = "contradicted"
        else:
            v = "not supported"
    elif (direction > 0 and low > 0) or (direction < 0 and high < 0):
        v = "supported"
    elif (direction > 0 and high < 0) or (direction < 0 and low > 0):
        v = "contradicted"
    else:
        v = "not supported"
    out["verdict"] = v
    return out


def _index(rows: Iterable[Row], metric: str) -> dict[str, list[Row]]:
    by_study: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric:
            by_study[str(r["study"])].append(r)
    return by_study


def _per_seed(rows: list[Row], pred: Callable[[Row], bool]) -> dict[int, float]:
    """Per seed, the mean value over the rows matching ``pred``."""
    acc: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if pred(r):
            acc[int(r["seed"])].append(float(r["value"]))
    return {s: float(np.mean(v)) for s, v in acc.items()}


def _diff(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def _cell_matcher(cell: tuple[str, int]) -> Callable[[Row], bool]:
    def match(r: Row) -> bool:
        return r["attack_model"] == cell[0] and int(r["n_shadows"]) == cell[1]

    return match


def _finding_diffs(rows: list[Row], fid: str) -> tuple[list[float], str, int] | None:
    """Per-seed differences, a description of the comparison, and the claimed direction."""
    if not rows:
        return None
    if fid == "F1":
        cells: dict[tuple[str, int], dict[int, float]] = {}
        for cell in {(str(r["attack_model"]), int(r["n_shadows"])) for r in rows}:
            cells[cell] = _per_seed(rows, _cell_matcher(cell))
        if ("linear-svm", 6) not in cells or len(cells) < 2:
            return None
        others = {k: v for k, v in cells.items() if k != ("linear-svm", 6)}
        best = max(others, key=lambda k: np.mean(list(others[k].values())))
        return (
            _diff(cells[("linear-svm", 6)], others[best]),
            f"linear SVM with 6 shadows minus the best other pair ({best[0]}, {best[1]} shadows)",
            +1,
        )
    if fid == "F1b":
        rbf = _per_seed(rows, lambda r: r["attack_model"] == "rbf-svm")
        lin = _per_seed(rows, lambda r: r["attack_model"] == "linear-svm")
        if not rbf or not lin:
            return None
        return _diff(rbf, lin), f"RBF SVM minus linear SVM, mean over shadow counts (margin ±{EQUIVALENCE_MARGIN})", 0
    if fid == "F2":
        by_seed: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            by_seed[int(r["seed"])].append((int(r["n_shadows"]), float(r["value"])))
        slopes = []
        for pts in by_seed.values():
            xs = np.array([p[0] for p in pts], float)
            if len(np.unique(xs)) >= 2:
                slopes.append(float(np.polyfit(xs, [p[1] for p in pts], 1)[0]))
        ns = sorted({int(r["n_shadows"]) for r in rows})
        return slopes, f"slope of accuracy per added shadow model, shadows {ns[0]}-{ns[-1]}", +1
    if fid == "F3":
        sizes = sorted({int(r["target_size"]) for r in rows})
        small, large = (3000, 6000) if {3000, 6000} <= set(sizes) else (sizes[0], sizes[-1])
        if small == large:
            return None
        a = _per_seed(rows, lambda r: int(r["target_size"]) == large)
        b = _per_seed(rows, lambda r: int(r["target_size"]) == small)
        return _diff(a, b), f"target size {large} minus {small}, mean over shadow counts", -1
    if fid == "F4":
        classes = sorted({int(r["classes"]) for r in rows})
        few, many = (5, 10) if {5, 10} <= set(classes) else (classes[0], classes[-1])
        if few == many:
            return None
        a = _per_seed(rows, lambda r: int(r["classes"]) == few)
        b = _per_seed(rows, lambda r: int(r["classes"]) == many)
        return _diff(a, b), f"{few} classes minus {many} classes, mean over shadow counts", -1
    if fid in ("F5a", "F5b"):
        first, second = ("dense", "simple") if fid == "F5a" else ("dropout", "dense")
        a = _per_seed(rows, lambda r: r["arch"] == first)
        b = _per_seed(rows, lambda r: r["arch"] == second)
        if not a or not b:
            return None
        return _diff(a, b), f"{first} minus {second} target, mean over shadow counts", (+1 if fid == "F5a" else -1)
    if fid == "F6":
        mism = _per_seed(rows, lambda r: r["shadow_arch"] != r["arch"])
        match = _per_seed(rows, lambda r: r["shadow_arch"] == r["arch"])
        if not mism or not match:
            return None
        return _diff(mism, match), "mismatched minus matched shadow architecture, mean over targets", -1
    raise ValueError(f"unknown finding id {fid!r}")


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:+.3f}".replace("+", "" if x < 0 else "+")


def compute_findings(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The paper's findings (:data:`~miaudit.studies.paper.FINDINGS`) with verdicts from tidy result rows.

    Rows are dicts with keys ``study, seed, attack_model, n_shadows, target_size, classes, arch,
    shadow_arch, metric, value``. Findings whose study did not run are left out. The verdict uses
    attack accuracy (the paper's metric); the same comparison on AUC is reported beside it.
    """
    rows = list(rows)
    acc, auc = _index(rows, "accuracy"), _index(rows, "auc")
    out = []
    for f in FINDINGS:
        got = _finding_diffs(acc.get(f["study"], []), f["id"])
        if got is None:
            continue
        diffs, comparison, direction = got
        v = verdict(diffs, direction=direction)
        auc_got = _finding_diffs(auc.get(f["study"], []), f["id"])
        v_auc = verdict(auc_got[0], direction=direction) if auc_got else None
        sentence = (
            f"{f['claim']}: {v['verdict']} (difference {_fmt(v['difference'])}, "
            f"95% CI [{_fmt(v['low'])}, {_fmt(v['high'])}], {v['n']} seeds)"
        )
        out.append(
            {
                **f,
                "metric": "accuracy",
                "comparison": comparison,
                "direction": direction,
                **v,
                "auc": v_auc,
                "sentence": sentence,
            }
        )
    return out
