"""Verdicts on the seed paper's findings, computed from our per-seed results.

Each finding (:data:`~miaudit.studies.paper.FINDINGS`) becomes one difference per seed, for example
attack accuracy at 6,000 minus at 3,000 target records, averaged over shadow counts 4-8. The two arms
of a comparison share the seed, so the differences are paired: a seed counts only when it has every
cell of the comparison in both arms (a seed present in one arm only, or missing a cell, is left
out), so every seed's difference averages the same cells. Only rows of the paper's attack, the
shadow-model attack (``attack == "shokri"``; rows without an ``attack`` key count as ``"shokri"``),
feed a finding: a study whose grid also varies the attack never mixes attacks into one.

Over seeds, the differences give a mean and a 95% Student-t interval ``[low, high]``
(:func:`~miaudit.metrics.mean_ci`). Each finding declares a ``margin > 0``, the smallest effect that
matters (justified per finding in :mod:`miaudit.studies.paper`). With ``d`` the direction the paper
claims (+1 or -1) and the interval written on the claimed side, ``[lo, hi] = [d*low, d*high]``
ordered, the verdict is the first that applies:

``supported``
    ``lo > margin``: the whole interval lies beyond the margin on the claimed side.
``contradicted``
    ``hi < -margin``: the whole interval lies beyond the margin on the other side.
``negligible``
    ``-margin <= lo`` and ``hi <= margin``: the whole interval lies within the margin, so any
    effect is too small to matter (an equivalence test in the manner of TOST, with the same 95%
    interval, i.e. two one-sided tests at 2.5% each).
``inconclusive``
    anything else (the interval straddles a margin), or fewer than 3 seeds, when no interval is
    claimed at all (:data:`~miaudit.metrics.MIN_INTERVAL_VALUES`).

Since ``lo <= hi`` and ``margin > 0``, no interval is both beyond ``+margin`` and beyond
``-margin``: a finding is never both supported and contradicted. For the equivalence claim (F1b,
direction 0, "comparable") ``supported`` means the interval lies within ``[-margin, +margin]``,
``contradicted`` that it lies entirely outside it (``low > margin`` or ``high < -margin``), and
``inconclusive`` anything else; it is never ``negligible``.

Each verdict also says how many seeds a decisive answer would need (``seeds_needed``): taking the
observed mean ``m`` and standard deviation ``s`` of the per-seed differences as the truth, the
smallest ``n >= 3`` whose expected half-width ``t(0.975, n - 1) * s / sqrt(n)`` is below the distance
``| |m| - margin |`` from the mean to the margin (:func:`~miaudit.metrics.seeds_needed`). When the
mean lies beyond the margin that ``n`` decides the claim either way (supported or contradicted);
when it lies within, no number of seeds would make the finding supported or contradicted and
``seeds_needed`` is the ``n`` for ``negligible`` (for F1b, ``supported``). It is None when the mean
sits exactly on the margin or fewer than 2 seeds leave no spread to estimate. A decisive verdict
reports it too (it is then at most about the seeds used).

The verdict uses attack accuracy (the paper's metric); the same comparison and rule on AUC, with the
same margin, is reported beside it. No verdict is written by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from miaudit.metrics import MIN_INTERVAL_VALUES, mean_ci, paired_difference_ci, seeds_needed
from miaudit.studies.paper import FINDINGS, PaperFinding

__all__ = ["PAPER_ATTACK", "VERDICTS", "compute_findings", "decide", "verdict"]

Row = Mapping[str, Any]
#: seed -> cell (the values of the setting columns an arm does not vary) -> mean value
Arm = dict[int, dict[tuple[str, ...], float]]

#: The attack the paper used; only its rows feed the findings.
PAPER_ATTACK = "shokri"
#: Every verdict :func:`verdict` can give.
VERDICTS = ("supported", "contradicted", "negligible", "inconclusive")
_CELL_COLUMNS = ("attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")


def _check_direction_margin(direction: object, margin: object) -> tuple[int, float]:
    if isinstance(direction, bool) or direction not in (-1, 0, 1):
        raise ValueError(f"direction must be +1, -1 (the claimed sign) or 0 (an equivalence claim); got {direction!r}")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin < math.inf:
        raise ValueError(f"margin must be a positive finite number, the smallest effect that matters; got {margin!r}")
    return int(direction), float(margin)


def decide(low: float, high: float, *, direction: int, margin: float) -> str:
    """The verdict for a 95% interval ``[low, high]`` of a difference (the rule in the module docstring).

    Parameters
    ----------
    low, high : float
        The interval's ends; NaN (no interval) gives ``"inconclusive"``.
    direction : {+1, -1, 0}
        The sign the claim predicts; 0 claims equivalence within ``margin``.
    margin : float
        The smallest effect that matters, positive.

    >>> decide(0.02, 0.05, direction=+1, margin=0.01), decide(0.02, 0.05, direction=-1, margin=0.01)
    ('supported', 'contradicted')
    >>> decide(-0.005, 0.008, direction=+1, margin=0.01), decide(0.005, 0.03, direction=+1, margin=0.01)
    ('negligible', 'inconclusive')
    >>> decide(-0.005, 0.008, direction=0, margin=0.01), decide(0.02, 0.05, direction=0, margin=0.01)
    ('supported', 'contradicted')
    """
    direction, margin = _check_direction_margin(direction, margin)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > high:
        raise ValueError(f"low must not exceed high; got the interval [{low!r}, {high!r}]")
    inside = -margin <= low and high <= margin
    if direction == 0:
        if inside:
            return "supported"
        return "contradicted" if low > margin or high < -margin else "inconclusive"
    lo, hi = (low, high) if direction > 0 else (-high, -low)
    if lo > margin:
        return "supported"
    if hi < -margin:
        return "contradicted"
    return "negligible" if inside else "inconclusive"


def verdict(diffs: Iterable[float], *, direction: int, margin: float) -> dict[str, Any]:
    """Mean, 95% interval, p-value, verdict and seeds needed, from per-seed differences.

    Parameters
    ----------
    diffs : iterable of float
        One difference per seed; non-finite ones are dropped.
    direction : {+1, -1, 0}
        The sign the claim predicts; 0 claims equivalence within ``margin``.
    margin : float
        The smallest effect that matters, positive, in the differences' units.

    Returns
    -------
    dict
        ``difference`` (mean), ``low``, ``high`` (NaN with fewer than 3 seeds), ``p_value``
        (two-sided t-test of no difference; NaN with fewer than 3 seeds), ``n``, ``verdict``,
        ``margin`` and ``seeds_needed`` (see the module docstring).

    >>> v = verdict([-0.05, -0.04, -0.06], direction=-1, margin=0.01)
    >>> v["verdict"], round(v["high"], 4), v["seeds_needed"]
    ('supported', -0.0252, 3)
    >>> v = verdict([0.01, -0.01, 0.02, -0.02], direction=-1, margin=0.01)
    >>> v["verdict"], v["seeds_needed"]
    ('inconclusive', 16)
    >>> verdict([0.05, 0.06], direction=+1, margin=0.01)["low"]
    nan
    """
    direction, margin = _check_direction_margin(direction, margin)
    d = np.asarray(list(diffs), dtype=float)
    d = d[np.isfinite(d)]
    out: dict[str, Any] = {
        "difference": math.nan,
        "low": math.nan,
        "high": math.nan,
        "p_value": math.nan,
        "n": int(d.size),
        "margin": margin,
        "seeds_needed": None,
    }
    if d.size == 0:
        out["verdict"] = "inconclusive"
        return out
    ci = mean_ci(d)
    out.update(difference=float(ci["mean"]), low=float(ci["low"]), high=float(ci["high"]))
    if d.size >= MIN_INTERVAL_VALUES:
        out["p_value"] = float(paired_difference_ci(d, np.zeros_like(d))["p_value"])
    out["verdict"] = decide(out["low"], out["high"], direction=direction, margin=margin)
    std = float(ci["std"])
    if math.isfinite(std):
        out["seeds_needed"] = seeds_needed(std, abs(abs(out["difference"]) - margin))
    return out


# ------------------------------------------------------------------------------------ pairing
def _attack(r: Row) -> str:
    a = r.get("attack")
    if a is None or (isinstance(a, float) and math.isnan(a)) or str(a).strip() == "":
        return PAPER_ATTACK  # rows written before the attack column existed
    return str(a)


def _index(rows: Iterable[Row], metric: str) -> dict[str, list[Row]]:
    """The paper attack's rows of ``metric``, by study."""
    by_study: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric and _attack(r) == PAPER_ATTACK:
            by_study[str(r["study"])].append(r)
    return by_study


def _arm(rows: list[Row], pred: Callable[[Row], bool], vary: tuple[str, ...]) -> Arm:
    """Per seed and cell, the mean value of the rows matching ``pred``; cells ignore the ``vary`` columns."""
    keep = [c for c in _CELL_COLUMNS if c not in vary]
    acc: dict[int, dict[tuple[str, ...], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if pred(r):
            acc[int(r["seed"])][tuple(str(r.get(c)) for c in keep)].append(float(r["value"]))
    return {s: {k: float(np.mean(v)) for k, v in cells.items()} for s, cells in acc.items()}


def _paired(a: Arm, b: Arm) -> dict[int, float]:
    """Per seed, the mean over cells of ``a - b``, for the seeds that have every cell in both arms.

    The cells are those present in both arms for some seed; a seed lacking any of them in either
    arm (in particular a seed present in one arm only) is left out.
    """
    seeds = sorted(set(a) & set(b))
    cells: set[tuple[str, ...]] = set()
    for s in seeds:
        cells |= a[s].keys() & b[s].keys()
    if not cells:
        return {}
    order = sorted(cells)
    return {
        s: float(np.mean([a[s][k] - b[s][k] for k in order]))
        for s in seeds
        if cells <= a[s].keys() and cells <= b[s].keys()
    }


def _column_is(column: str, value: object) -> Callable[[Row], bool]:
    return lambda r: str(r.get(column)) == str(value)


def _two_levels(rows: list[Row], column: str, wanted: tuple[int, int]) -> tuple[int, int] | None:
    """``wanted`` when both levels ran, else the smallest and largest levels (quick runs), or None."""
    levels = sorted({int(r[column]) for r in rows})
    pair = wanted if set(wanted) <= set(levels) else (levels[0], levels[-1])
    return None if pair[0] == pair[1] else pair


def _slopes(rows: list[Row]) -> tuple[dict[int, float], list[int]]:
    """Per seed, the least-squares slope of accuracy on the shadow count, over every count that ran."""
    per: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[int(r["seed"])][int(r["n_shadows"])].append(float(r["value"]))
    counts = sorted({n for by_n in per.values() for n in by_n})
    slopes = {}
    for s, by_n in sorted(per.items()):
        if len(counts) >= 2 and set(by_n) == set(counts):  # a seed missing a count is left out
            ys = [float(np.mean(by_n[n])) for n in counts]
            slopes[s] = float(np.polyfit(np.asarray(counts, float), ys, 1)[0])
    return slopes, counts


def _finding_diffs(rows: list[Row], fid: str) -> tuple[dict[int, float], str] | None:
    """Per-seed differences of a finding and a description of the comparison; None when it cannot be made."""
    if not rows:
        return None
    if fid == "F1":
        vary = ("attack_model", "n_shadows")
        pairs = sorted({(str(r["attack_model"]), int(r["n_shadows"])) for r in rows})
        best_cell = ("linear-svm", 6)
        if best_cell not in pairs or len(pairs) < 2:
            return None

        def cell(pair: tuple[str, int]) -> Arm:
            return _arm(rows, lambda r: (str(r["attack_model"]), int(r["n_shadows"])) == pair, vary)

        best = cell(best_cell)
        # The strongest competitor: the other pair with the smallest mean paired difference.
        others = [(p, _paired(best, cell(p))) for p in pairs if p != best_cell]
        others = [(p, d) for p, d in others if d]
        if not others:
            return {}, "linear SVM with 6 shadows minus the best other pair (no seed has both)"
        pair, diffs = min(others, key=lambda pd: float(np.mean(list(pd[1].values()))))
        return diffs, f"linear SVM with 6 shadows minus the best other pair ({pair[0]}, {pair[1]} shadows)"
    if fid == "F1b":
        rbf = _arm(rows, _column_is("attack_model", "rbf-svm"), ("attack_model",))
        lin = _arm(rows, _column_is("attack_model", "linear-svm"), ("attack_model",))
        if not rbf or not lin:
            return None
        return _paired(rbf, lin), "RBF SVM minus linear SVM, mean over shadow counts"
    if fid == "F2":
        slopes, counts = _slopes(rows)
        if len(counts) < 2:
            return None
        return slopes, f"slope of accuracy per added shadow model, shadows {counts[0]}-{counts[-1]}"
    if fid == "F3":
        sizes = _two_levels(rows, "target_size", (3000, 6000))
        if sizes is None:
            return None
        small, large = sizes
        a = _arm(rows, _column_is("target_size", large), ("target_size",))
        b = _arm(rows, _column_is("target_size", small), ("target_size",))
        return _paired(a, b), f"target size {large} minus {small}, mean over shadow counts"
    if fid == "F4":
        classes = _two_levels(rows, "classes", (5, 10))
        if classes is None:
            return None
        few, many = classes
        a = _arm(rows, _column_is("classes", few), ("classes",))
        b = _arm(rows, _column_is("classes", many), ("classes",))
        return _paired(a, b), f"{few} classes minus {many} classes, mean over shadow counts"
    if fid in ("F5a", "F5b"):
        first, second = ("dense", "simple") if fid == "F5a" else ("dropout", "dense")
        a = _arm(rows, _column_is("arch", first), ("arch", "shadow_arch"))
        b = _arm(rows, _column_is("arch", second), ("arch", "shadow_arch"))
        if not a or not b:
            return None
        return _paired(a, b), f"{first} minus {second} target, mean over shadow counts"
    if fid == "F6":
        mism = _arm(rows, lambda r: str(r["shadow_arch"]) != str(r["arch"]), ("shadow_arch",))
        match = _arm(rows, lambda r: str(r["shadow_arch"]) == str(r["arch"]), ("shadow_arch",))
        if not mism or not match:
            return None
        return _paired(mism, match), "mismatched minus matched shadow architecture, mean over targets"
    raise ValueError(f"unknown finding id {fid!r}; known: {', '.join(f.id for f in FINDINGS)}")


# ------------------------------------------------------------------------------------ records
def _decimals(margin: float) -> int:
    """Decimals that show differences finer than the margin: 3 for 0.01, 4 for 0.0015."""
    return max(3, 1 - math.floor(math.log10(margin)))


def _fmt(x: float, decimals: int) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.{decimals}f}".replace("+", "" if x < 0 else "+")


def _sentence(f: PaperFinding, v: Mapping[str, Any]) -> str:
    k, n = _decimals(f.margin), int(v["n"])
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    if n == 0:
        body = f"no seed has both arms, margin {f.margin:g}"
    elif math.isfinite(v["low"]):
        body = (
            f"difference {_fmt(v['difference'], k)}, 95% CI [{_fmt(v['low'], k)}, {_fmt(v['high'], k)}], "
            f"margin {f.margin:g}, {seeds}"
        )
    else:
        body = f"difference {_fmt(v['difference'], k)}, no interval from {seeds}, margin {f.margin:g}"
    if v["verdict"] == "inconclusive" and n > 0:
        if v["seeds_needed"] is not None:
            body += f"; about {v['seeds_needed']} seeds would decide"
        elif n < 2:
            body += "; at least 2 seeds are needed to estimate the spread"
        else:
            body += "; the difference sits on the margin, no number of seeds would decide"
    return f"{f.claim}: {v['verdict']} ({body})"


#: findings that compare target networks: their records show each network's accuracies beside the verdict
_TARGET_ARMS = {"F5a": ("dense", "simple"), "F5b": ("dropout", "dense")}


def _target_accuracies(rows: list[Row], study: str, arches: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean train and test accuracy (and their gap) of each target network of a study, over seeds and settings."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        mine = str(r["study"]) == study and _attack(r) == PAPER_ATTACK and r["arch"] in arches
        if mine and r["metric"] in ("target_train_accuracy", "target_test_accuracy"):
            values[(str(r["arch"]), str(r["metric"]))].append(float(r["value"]))
    out = {}
    for arch in arches:
        train, test = values.get((arch, "target_train_accuracy")), values.get((arch, "target_test_accuracy"))
        if train and test:
            tr, te = float(np.mean(train)), float(np.mean(test))
            out[arch] = {"train_accuracy": tr, "test_accuracy": te, "gap": tr - te}
    return out


def compute_findings(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The paper's findings (:data:`~miaudit.studies.paper.FINDINGS`) with verdicts from tidy result rows.

    Parameters
    ----------
    rows : iterable of mapping
        Tidy rows, one per seed x setting x metric, with keys ``study, seed, attack_model,
        n_shadows, target_size, classes, arch, shadow_arch, metric, value`` and ``attack`` (missing
        in older runs: then ``"shokri"``). Only ``"shokri"`` rows are used.

    Returns
    -------
    list of dict
        One record per finding whose study ran, in :data:`FINDINGS` order: ``id, study, claim,
        paper_ref, metric, comparison, direction`` and :func:`verdict`'s keys for attack accuracy,
        ``sentence``, and ``auc``: the verdict of the same comparison on AUC (None without AUC rows).
        Findings that compare target networks (F5a, F5b) add ``targets``: each network's mean train and
        test accuracy and their gap, also stated at the end of the sentence.
    """
    rows = list(rows)
    acc, auc = _index(rows, "accuracy"), _index(rows, "auc")
    out = []
    for f in FINDINGS:
        got = _finding_diffs(acc.get(f.study, []), f.id)
        if got is None:
            continue
        diffs, comparison = got
        if f.direction == 0:
            comparison += f" (margin ±{f.margin:g})"
        v = verdict(diffs.values(), direction=f.direction, margin=f.margin)
        auc_got = _finding_diffs(auc.get(f.study, []), f.id)
        v_auc = verdict(auc_got[0].values(), direction=f.direction, margin=f.margin) if auc_got else None
        sentence = _sentence(f, v)
        record: dict[str, Any] = {}
        if f.id in _TARGET_ARMS:
            targets = _target_accuracies(rows, f.study, _TARGET_ARMS[f.id])
            record["targets"] = targets
            if targets:
                sentence += "; targets' train/test accuracy (gap): " + ", ".join(
                    f"{arch} {t['train_accuracy']:.3f}/{t['test_accuracy']:.3f} ({t['gap']:.3f})"
                    for arch, t in targets.items()
                )
        out.append(
            {
                **f.as_record(),
                "metric": "accuracy",
                "comparison": comparison,
                "direction": f.direction,
                **v,
                "auc": v_auc,
                "sentence": sentence,
                **record,
            }
        )
    return out
