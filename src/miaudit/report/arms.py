"""The arms of a defence study, and the numbers its report states: compute only, no drawing.

A study of defences (``configs/study7.toml``: DP-SGD, weight decay, dropout... ; ``study8.toml``:
output policies at a prediction API) runs the same attacks against several *arms*, targets that
share every column of ``results.csv`` and differ in their training recipe or in what their API
answers. An arm is named by its ``label`` in ``settings.json``; without that file (runs written
before it existed) by its setting id with the attack's name taken out. Each arm has a utility (the
test accuracy of the answers the attacker gets: ``served_test_accuracy`` where an output policy
applies, ``target_test_accuracy`` otherwise) and, per attack, the attack's AUC and TPR at 0.1% FPR.

The pure functions (:func:`pareto_front`, :func:`best_at_leakage`, :func:`closest_arm`,
:func:`leakage_removed`) take plain numbers; :func:`study_arms` builds the arms from a loaded run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from miaudit.report.load import RunData
from miaudit.report.records import Interval, SummaryRow
from miaudit.report.setting_info import SettingInfo

__all__ = [
    "EPSILON",
    "LEAKAGE_METRICS",
    "SERVED",
    "TEST",
    "TPR",
    "Arm",
    "AttackResult",
    "arm_study_kind",
    "best_at_leakage",
    "closest_arm",
    "leakage_removed",
    "pareto_front",
    "study_arms",
]

TEST = "target_test_accuracy"
SERVED = "served_test_accuracy"
TPR = "tpr_at_fpr_0.001"
#: The epsilon a DP-SGD target's training spent, when the run records it (one value per seed).
EPSILON = "target_epsilon"
#: The leakage metrics a frontier is drawn for, with their value at chance.
LEAKAGE_METRICS: dict[str, float] = {"auc": 0.5, TPR: 0.001}

StudyKind = Literal["frontier", "api"]


@dataclass(frozen=True)
class AttackResult:
    """One attack on one arm: its setting, AUC and TPR at 0.1% FPR over seeds, and each seed's value."""

    attack: str
    setting_id: str
    auc: Interval
    tpr: Interval
    auc_by_seed: Mapping[int, float] = field(default_factory=dict)
    tpr_by_seed: Mapping[int, float] = field(default_factory=dict)

    def leakage(self, metric: str) -> Interval:
        """``auc`` or the TPR at 0.1% FPR (``tpr_at_fpr_0.001``)."""
        return self.auc if metric == "auc" else self.tpr

    def by_seed(self, metric: str) -> Mapping[int, float]:
        """Each seed's value of ``auc`` or the TPR at 0.1% FPR."""
        return self.auc_by_seed if metric == "auc" else self.tpr_by_seed


@dataclass(frozen=True)
class Arm:
    """One defence (or policy) of a study: its name, utility and the attacks on it.

    ``utility_metric`` is ``served_test_accuracy`` for an arm whose answers pass an output policy,
    ``target_test_accuracy`` otherwise; ``info`` is its first setting in ``settings.json`` (None
    without that file); ``epsilon`` the epsilon its DP-SGD training spent where the run recorded
    it (metric ``target_epsilon``).
    """

    key: str
    label: str
    utility: Interval
    utility_metric: str
    utility_by_seed: Mapping[int, float]
    attacks: tuple[AttackResult, ...]
    info: SettingInfo | None = None
    epsilon: Interval | None = None

    @property
    def family(self) -> str:
        """The kind of defence (``DP-SGD``, ``output policy``...); ``arm`` without ``settings.json``."""
        return self.info.family if self.info is not None else "arm"

    def strongest(self, metric: str = "auc") -> AttackResult:
        """The attack with the highest mean ``metric`` on this arm (the first on ties)."""
        return max(self.attacks, key=lambda a: _finite(a.leakage(metric).mean))

    def attack(self, name: str) -> AttackResult | None:
        """The result of the attack ``name``, or None when it did not run on this arm."""
        return next((a for a in self.attacks if a.attack == name), None)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


# ------------------------------------------------------------------------------ pure functions
def pareto_front(utility: Sequence[float], leakage: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: the highest utility for the least leakage.

    A point is dominated when another has utility at least as high and leakage at least as low,
    one of them strictly. Points with a NaN are never on the front. Returned in order of rising
    utility (so leakage rises along the front too).

    >>> pareto_front([0.9, 0.8, 0.7, 0.85], [0.70, 0.60, 0.65, 0.75])
    [1, 0]
    >>> pareto_front([0.8, 0.8], [0.6, 0.6])  # equal points are both on the front
    [0, 1]
    """
    if len(utility) != len(leakage):
        raise ValueError(f"utility and leakage must have the same length; got {len(utility)} and {len(leakage)}")
    pts = [(float(u), float(v)) for u, v in zip(utility, leakage, strict=True)]
    ok = [math.isfinite(u) and math.isfinite(v) for u, v in pts]
    front = []
    for i, (u, v) in enumerate(pts):
        if not ok[i]:
            continue
        dominated = any(
            ok[j] and uj >= u and vj <= v and (uj > u or vj < v) for j, (uj, vj) in enumerate(pts) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (pts[i][0], pts[i][1], i))


def best_at_leakage(utility: Sequence[float], leakage: Sequence[float], threshold: float) -> int | None:
    """The index with the highest utility among those whose leakage is at or below ``threshold``.

    None when no point qualifies; ties in utility go to the lower leakage, then the first index.

    >>> best_at_leakage([0.9, 0.8, 0.7], [0.70, 0.60, 0.52], 0.6), best_at_leakage([0.9], [0.7], 0.55)
    (1, None)
    """
    ok = [i for i, (u, v) in enumerate(zip(utility, leakage, strict=True)) if math.isfinite(u) and v <= threshold]
    if not ok:
        return None
    return max(ok, key=lambda i: (utility[i], -leakage[i], -i))


def closest_arm(utility: Sequence[float], target: float) -> int | None:
    """The index whose utility is closest to ``target`` (the first on ties); None when there is none.

    >>> closest_arm([0.70, 0.81, 0.86], 0.84)
    2
    """
    ok = [i for i, u in enumerate(utility) if math.isfinite(u)]
    return min(ok, key=lambda i: (abs(utility[i] - target), i)) if ok else None


def leakage_removed(baseline: float, defended: float, *, chance: float = 0.5) -> float:
    """The share of the baseline's leakage above chance that a defence removes (NaN when there is none to remove).

    >>> round(leakage_removed(0.70, 0.55), 2), leakage_removed(0.503, 0.5)
    (0.75, nan)
    """
    above = baseline - chance
    if not (math.isfinite(above) and math.isfinite(defended)) or above < 0.01:
        return math.nan
    return (baseline - defended) / above


# ---------------------------------------------------------------------------------- from a run
def _arm_key(run: RunData, row: SummaryRow) -> tuple[str, str]:
    """(key, label) of the arm a setting belongs to: its label, or its id from the target size on.

    Setting ids read ``s<study>-<attack>-<attack model>-n<shadows>-t<size>-c<classes>-<arch>[-<hash>]``;
    the part from ``t<size>`` on names the target and its defence, whatever the attack.
    """
    label = run.label(row.setting_id)
    if label:
        return label, label
    at = row.setting_id.find(f"-t{row.target_size}-") if row.target_size is not None else -1
    key = row.setting_id[at + 1 :] if at >= 0 else row.setting_id.replace(f"-{row.attack}-", "-", 1)
    return key, key


def _hidden_arms(rows: Sequence[SummaryRow]) -> bool:
    """Whether two settings share every column, so that they differ only where the CSV does not show it."""
    seen: dict[tuple[object, ...], str] = {}
    for r in rows:
        cols = tuple(r.setting().values())
        if seen.setdefault(cols, r.setting_id) != r.setting_id:
            return True
    return False


def study_arms(run: RunData, study: str) -> list[Arm]:
    """The arms of ``study``, in the order their settings were run, each with every attack on it.

    Empty unless the study is a study of arms: its settings carry labels in ``settings.json``, or
    (older runs) two of its settings share every column of ``summary.csv``. A study of one arm is
    not a study of arms either.
    """
    rows = [r for r in run.summary if r.study == study]
    labelled = any(run.label(r.setting_id) for r in rows)
    if not rows or not (labelled or _hidden_arms(rows)):
        return []
    order = {sid: i for i, sid in enumerate(run.settings)}
    index = {(r.setting_id, r.metric): r for r in rows}
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    for res in run.results:
        if res.study == study:
            per_seed.setdefault((res.setting_id, res.metric), {})[res.seed] = res.value
    groups: dict[str, tuple[str, list[SummaryRow]]] = {}
    for r in sorted({r.setting_id: r for r in rows}.values(), key=lambda r: (order.get(r.setting_id, len(order)),)):
        key, label = _arm_key(run, r)
        groups.setdefault(key, (label, []))[1].append(r)
    arms = []
    for key, (label, settings) in groups.items():
        metric = SERVED if any((s.setting_id, SERVED) in index for s in settings) else TEST
        first = next((s for s in settings if (s.setting_id, metric) in index), settings[0])
        util = index.get((first.setting_id, metric))
        attacks = []
        for s in settings:
            auc, tpr = index.get((s.setting_id, "auc")), index.get((s.setting_id, TPR))
            attacks.append(
                AttackResult(
                    attack=s.attack,
                    setting_id=s.setting_id,
                    auc=auc.interval if auc is not None else Interval(math.nan, n=0),
                    tpr=tpr.interval if tpr is not None else Interval(math.nan, n=0),
                    auc_by_seed=per_seed.get((s.setting_id, "auc"), {}),
                    tpr_by_seed=per_seed.get((s.setting_id, TPR), {}),
                )
            )
        arms.append(
            Arm(
                key=key,
                label=label,
                utility=util.interval if util is not None else Interval(math.nan, n=0),
                utility_metric=metric,
                utility_by_seed=per_seed.get((first.setting_id, metric), {}),
                attacks=tuple(attacks),
                info=run.settings.get(first.setting_id),
                epsilon=eps.interval if (eps := index.get((first.setting_id, EPSILON))) is not None else None,
            )
        )
    return arms if len(arms) > 1 else []


def arm_study_kind(run: RunData, study: str, arms: Sequence[Arm]) -> StudyKind:
    """``api`` when every arm is the same trained target answering through another policy, else ``frontier``.

    With ``settings.json``: the arms share their architecture and recipe. Without it: every arm's
    target has the same train and test accuracy, seed by seed.
    """
    infos = [a.info for a in arms]
    if all(i is not None for i in infos):
        return "api" if len({i.training() for i in infos if i is not None}) == 1 else "frontier"
    first_settings = {a.attacks[0].setting_id for a in arms}
    values: dict[str, set[tuple[int, float]]] = {}
    for res in run.results:
        if res.setting_id in first_settings and res.metric in ("target_train_accuracy", TEST):
            values.setdefault(res.metric, set()).add((res.seed, round(res.value, 12)))
    seeds = {seed for vals in values.values() for seed, _ in vals}
    same = bool(values) and all(len(vals) == len({s for s, _ in vals}) for vals in values.values())
    return "api" if same and seeds else "frontier"
