"""What an audit concludes from one attack's scores: metrics with intervals, slices, the verdict, per-record rows.

Pure functions over arrays (scores, true membership, labels, predictions); :mod:`.audit` calls them and
writes what they return (``docs/audit-format.md``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import atomic_path, atomic_write_text
from miaudit.metrics import auc, bootstrap_ci, fpr_key, membership_metrics, threshold_for_fpr, tpr_at_fpr

__all__ = [
    "FLAG_LEVELS",
    "RECORD_COLUMNS",
    "AttackOutcome",
    "attack_outcome",
    "chance_pvalue",
    "overall_verdict",
    "slice_metrics",
    "verdict_text",
    "write_exposed",
    "write_records",
]

logger = logging.getLogger(__name__)

#: false-positive rates at which records are flagged in ``records.csv``
FLAG_LEVELS: tuple[float, ...] = (0.01, 0.001)
#: attacks whose score is a log likelihood ratio of "member" against "non-member"
LIKELIHOOD_RATIO_ATTACKS = frozenset({"lira"})
RECORD_COLUMNS = (
    "id",
    "label",
    "class_index",
    "member",
    "predicted",
    "correct",
    "attack",
    "score",
    "rank",
    "likelihood_ratio",
    *(f"flagged_fpr_{fpr_key(level)}" for level in FLAG_LEVELS),
)
#: fewest members and non-members of a slice for its metrics (fewer: reported as counts only)
MIN_SLICE = 5


@dataclass(frozen=True, eq=False)
class AttackOutcome:
    """One attack's result on the evaluated records.

    Attributes
    ----------
    name : str
    scores : ndarray of shape (n_samples,)
    member : ndarray of shape (n_samples,), bool
    threshold : float
    metrics : dict (:func:`~miaudit.metrics.membership_metrics`)
    intervals : dict
        ``{"auc": [low, high], "tpr_at_fpr": {"0.01": [low, high], "0.001": [low, high]}}`` (95% bootstrap).
    flagged : dict
        Members flagged at each of :data:`FLAG_LEVELS`, keyed by :func:`~miaudit.metrics.fpr_key`.
    flag_thresholds : dict
        The score threshold of each level.
    """

    name: str
    scores: np.ndarray
    member: np.ndarray
    threshold: float
    metrics: dict[str, Any]
    intervals: dict[str, Any]
    flagged: dict[str, int]
    flag_thresholds: dict[str, float]

    @property
    def strength(self) -> tuple[float, float]:
        """How strong the attack is: TPR at 0.1% FPR, then AUC (for choosing the strongest)."""
        return (float(self.metrics["tpr_at_fpr"][fpr_key(0.001)]), float(self.metrics["auc"]))


def attack_outcome(
    name: str, member: np.ndarray, scores: np.ndarray, *, threshold: float, n_boot: int, seed: int
) -> AttackOutcome:
    """Metrics of one attack's scores, bootstrap intervals of AUC and TPR at 1% and 0.1% FPR, flag counts."""
    member = np.asarray(member, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    metrics = membership_metrics(member, scores, threshold=threshold)
    _, lo, hi = bootstrap_ci(member, scores, auc, n_boot=n_boot, seed=seed)
    intervals: dict[str, Any] = {"auc": [lo, hi], "tpr_at_fpr": {}}
    for k, level in enumerate(FLAG_LEVELS):

        def tpr(y: np.ndarray, s: np.ndarray, level: float = level) -> float:
            return float(tpr_at_fpr(y, s, level))  # type: ignore[arg-type]

        _, lo, hi = bootstrap_ci(member, scores, tpr, n_boot=n_boot, seed=seed + 1 + k)
        intervals["tpr_at_fpr"][fpr_key(level)] = [lo, hi]
    flagged, thresholds = {}, {}
    for level in FLAG_LEVELS:
        t = threshold_for_fpr(scores[~member], level)
        thresholds[fpr_key(level)] = t
        flagged[fpr_key(level)] = int(np.count_nonzero(member & (scores >= t)))
    return AttackOutcome(name, scores, member, float(threshold), metrics, intervals, flagged, thresholds)


def chance_pvalue(n_members: int, n_nonmembers: int, *, found: int, fpr: float) -> float:
    """P(an attack with no signal finds at least ``found`` members at false-positive rate ``fpr``).

    With no signal, scores are exchangeable: ranked by score, members and non-members come in random order.
    The rule flagging at most ``f = floor(fpr * n_nonmembers)`` non-members flags the members ranked above the
    (f+1)-th non-member, a negative hypergeometric count (members drawn before f+1 non-members). Exact, unlike
    a bootstrap of a TPR at a few false positives.

    >>> round(chance_pvalue(599, 599, found=5, fpr=0.001), 3)  # 5 members above every non-member: about 1 in 32
    0.031
    """
    from scipy.stats import nhypergeom

    if found <= 0:
        return 1.0
    f = math.floor(fpr * n_nonmembers + 1e-9)
    return float(nhypergeom.sf(found - 1, n_members + n_nonmembers, n_members, f + 1))


def verdict_text(outcome: AttackOutcome, *, alpha: float = 0.05) -> tuple[bool, str]:
    """(leaks, sentence): whether the attack exposes members at 0.1% FPR, or leaks on average, or neither.

    Members are exposed when the number found at 0.1% FPR is more than an attack without signal finds with
    probability ``alpha`` (:func:`chance_pvalue`); else the model leaks on average when the AUC's 95% interval
    lies above 0.5 (members score higher, yet no single record is confidently named); else no leak is
    measurable: a lower bound on leakage, never a proof of privacy.
    """
    key = fpr_key(0.001)
    n, n0 = int(outcome.metrics["n_members"]), int(outcome.metrics["n_nonmembers"])
    found = outcome.flagged[key]
    p = chance_pvalue(n, n0, found=found, fpr=0.001)
    auc_v, (auc_lo, auc_hi) = outcome.metrics["auc"], outcome.intervals["auc"]
    if p < alpha:
        return True, (
            f"leaks: at 0.1% FPR the {outcome.name} attack finds {found} of {n} members "
            f"(an attack without signal would find as many with probability {p:.2g})"
        )
    if math.isfinite(auc_lo) and auc_lo > 0.5:
        return True, (
            f"leaks on average: the {outcome.name} attack tells members from non-members better than chance "
            f"(AUC {auc_v:.3f}, 95% interval {auc_lo:.3f}-{auc_hi:.3f}), but at 0.1% FPR it finds {found} of {n} "
            "members, not clearly more than chance: no single record is confidently exposed"
        )
    return False, (
        f"no leak measurable with this attacker and budget: at 0.1% FPR the {outcome.name} attack finds "
        f"{found} of {n} members, no more than chance (AUC {auc_v:.3f})"
    )


def overall_verdict(outcomes: Sequence[AttackOutcome]) -> dict[str, Any]:
    """The audit's verdict: that of the strongest attack (TPR at 0.1% FPR, then AUC).

    The strongest of several attacks is chosen after seeing them, so its test uses a Bonferroni-corrected
    level (0.05 divided by the number of attacks).
    """
    if not outcomes:
        return {"leaks": None, "text": "no attack finished", "attack": None}
    best = max(outcomes, key=lambda o: o.strength)
    leaks, text = verdict_text(best, alpha=0.05 / len(outcomes))
    return {"leaks": leaks, "text": text, "attack": best.name}


def _slice(member: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    n1, n0 = int(member.sum()), int((~member).sum())
    out: dict[str, Any] = {"n_members": n1, "n_nonmembers": n0}
    if n1 >= MIN_SLICE and n0 >= MIN_SLICE:
        out["auc"] = auc(member, scores)
        out[f"tpr_at_fpr_{fpr_key(0.01)}"] = float(tpr_at_fpr(member, scores, 0.01))  # type: ignore[arg-type]
    return out


def slice_metrics(
    member: np.ndarray, scores: np.ndarray, *, class_index: np.ndarray, correct: np.ndarray, class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Metrics per true class and for correctly vs wrongly predicted records (slices under 5 records: counts only)."""
    by_class = {
        str(class_names[c]): _slice(member[class_index == c], scores[class_index == c]) for c in np.unique(class_index)
    }
    by_prediction = {
        what: _slice(member[mask], scores[mask]) for what, mask in (("correct", correct), ("wrong", ~correct))
    }
    return {"class": by_class, "prediction": by_prediction}


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 = highest score; ties share the order of appearance (stable)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def record_rows(
    outcome: AttackOutcome,
    *,
    ids: np.ndarray,
    labels: np.ndarray,
    class_index: np.ndarray,
    member: np.ndarray,
    predicted: np.ndarray,
) -> dict[str, np.ndarray]:
    """The columns of ``records.csv`` for one attack, sorted by rank."""
    ranks = _ranks(outcome.scores)
    order = np.argsort(ranks, kind="stable")
    lr = outcome.scores if outcome.name in LIKELIHOOD_RATIO_ATTACKS else np.full(len(ranks), np.nan)
    cols: dict[str, np.ndarray] = {
        "id": np.asarray(ids, dtype=str)[order],
        "label": np.asarray([str(v) for v in labels], dtype=str)[order],
        "class_index": class_index[order].astype(np.int64),
        "member": member[order].astype(bool),
        "predicted": predicted[order].astype(np.int64),
        "correct": (predicted == class_index)[order],
        "attack": np.full(len(ranks), outcome.name, dtype=object).astype(str),
        "score": outcome.scores[order],
        "rank": ranks[order],
        "likelihood_ratio": lr[order],
    }
    for level in FLAG_LEVELS:
        key = fpr_key(level)
        cols[f"flagged_fpr_{key}"] = (outcome.scores >= outcome.flag_thresholds[key])[order]
    return cols


def _concat(tables: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {c: np.concatenate([t[c] for t in tables]) if tables else np.array([]) for c in RECORD_COLUMNS}


def write_records(directory: Path, tables: Sequence[dict[str, np.ndarray]]) -> list[Path]:
    """``records.csv`` and (with pyarrow installed) ``records.parquet``, written atomically."""
    cols = _concat(tables)
    n = len(cols["id"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RECORD_COLUMNS)
    for i in range(n):
        row = []
        for c in RECORD_COLUMNS:
            v = cols[c][i]
            if isinstance(v, np.floating | float):
                row.append("" if not math.isfinite(float(v)) else repr(float(v)))
            elif isinstance(v, np.bool_ | bool):
                row.append("true" if v else "false")
            else:
                row.append(str(v))
        w.writerow(row)
    written = [atomic_write_text(directory / "records.csv", buf.getvalue())]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        logger.warning("pyarrow is not installed: records.parquet not written (pip install 'miaudit[audit]')")
        return written
    arrays = {c: pa.array(cols[c].tolist() if cols[c].dtype.kind in "US" else cols[c]) for c in RECORD_COLUMNS}
    arrays["likelihood_ratio"] = pa.array(
        [None if not math.isfinite(v) else float(v) for v in cols["likelihood_ratio"].tolist()], type=pa.float64()
    )
    with atomic_path(directory / "records.parquet") as tmp:
        pq.write_table(pa.table(arrays), str(tmp))
    written.append(directory / "records.parquet")
    return written


def write_exposed(
    directory: Path,
    outcomes: Sequence[AttackOutcome],
    *,
    X: np.ndarray,
    ids: np.ndarray,
    member: np.ndarray,
    record_shape: Sequence[int] | None,
    top: int = 32,
) -> Path:
    """``exposed.npz``: each attack's most exposed members (features, ids, scores), at most ``top``."""
    arrays: dict[str, np.ndarray] = {"record_shape": np.asarray(record_shape or (), dtype=np.int64)}
    members = np.flatnonzero(member)
    for o in outcomes:
        best = members[np.argsort(-o.scores[members], kind="stable")[:top]]
        arrays[f"ids_{o.name}"] = np.asarray(ids, dtype=str)[best]
        arrays[f"X_{o.name}"] = np.asarray(X[best], dtype=np.float32)
        arrays[f"scores_{o.name}"] = o.scores[best]
    with atomic_path(directory / "exposed.npz") as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    return directory / "exposed.npz"
