"""The sections of a defence study: the privacy-utility frontier (study 7) and defences at the API (study 8).

A study of arms (:func:`~.arms.study_arms`) gets one of two sections instead of the generic study
section, whose tables would fold arms that share every CSV column into one cell:

- **frontier** (the arms train different targets: DP-SGD, weight decay, dropout...): a table of
  every arm and attack (utility, AUC, TPR at 0.1% FPR, with intervals), the frontier figure
  (utility against the strongest attack's leakage, the Pareto front marked), which defence gives the
  best utility at each leakage level, and the seed paper's dropout claim re-tested at equal utility
  against the DP-SGD arm of closest test accuracy;
- **api** (one target answering through different output policies): a table per policy and attack
  (utility through the API, AUC, TPR at 0.1% FPR), a figure, and what each policy buys against the
  full answers.

Every number comes from the stored run; nothing is recomputed from models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.metrics import MIN_INTERVAL_VALUES, paired_difference_ci, seeds_needed
from miaudit.report import figures as F
from miaudit.report.arms import (
    SERVED,
    TPR,
    Arm,
    arm_study_kind,
    best_at_leakage,
    closest_arm,
    leakage_removed,
    study_arms,
)
from miaudit.report.document import Block, Bullets, Paragraph, Section, Strong, Table, slug
from miaudit.report.frontier_figures import frontier_panels, plot_frontier, plot_policies
from miaudit.report.labels import fmt_bracket, fmt_num, metric_name
from miaudit.report.load import RunData
from miaudit.report.study_sections import study_title

__all__ = [
    "AUC_LEVELS",
    "DROPOUT_MARGIN",
    "TPR_LEVELS",
    "DefenceComparison",
    "arms_section",
    "decide",
    "dropout_vs_dp",
    "leakage_level_sentences",
    "policy_sentences",
]

#: Leakage levels the report names the best defence at: AUC of the strongest attack, and its TPR at 0.1% FPR.
AUC_LEVELS = (0.55, 0.6, 0.7)
TPR_LEVELS = (0.002, 0.01, 0.05)
#: The smallest AUC difference between dropout and DP-SGD that matters (as the paper's findings use on AUC).
DROPOUT_MARGIN = 0.01
_NO_SETTINGS = (
    "This run has no settings.json (it was written before runs stored each setting in full), so arms are "
    "named by their setting ids and the kind of each defence is unknown."
)
_TEXT_COLUMNS = frozenset({"policy", "defence", "kind", "attack", "Pareto front"})
_CAPTION = "Mean over seeds [95% interval]; the mean alone where there is no interval (fewer than 3 seeds)."


def _seeds(arms: Sequence[Arm]) -> int:
    return max((a.utility.n for a in arms), default=0)


def _utility_name(arm: Arm) -> str:
    return "test accuracy through the API" if arm.utility_metric == SERVED else "test accuracy"


def _arm_table(arms: Sequence[Arm], *, title: str, fronts: dict[str, set[int]], api: bool) -> Table:
    """One row per arm and attack: utility, AUC and TPR at 0.1% FPR with their intervals."""
    dp = any(a.info is not None and a.info.is_dp for a in arms)
    spent = any(a.epsilon is not None for a in arms)
    body = []
    for i, arm in enumerate(arms):
        on = [metric_name(m).replace("ROC ", "") for m, idx in fronts.items() if i in idx]
        for res in arm.attacks:
            line = [arm.label]
            if not api:
                line.append(arm.family)
            if dp:
                eps = arm.info.dp_epsilon if arm.info is not None else None
                line.append(f"{eps:g}" if eps is not None else "–")
            if spent:
                line.append(fmt_bracket(arm.epsilon, 2) if arm.epsilon is not None else "–")
            line += [res.attack, fmt_bracket(arm.utility), fmt_bracket(res.auc), fmt_bracket(res.tpr)]
            if not api:
                line.append(", ".join(on) or "–")
            line.append(str(res.auc.n))
            body.append(tuple(line))
    columns = [
        "policy" if api else "defence",
        *([] if api else ["kind"]),
        *(["DP ε (target)"] if dp else []),
        *(["ε spent"] if spent else []),
    ]
    columns += ["attack", "utility" + (" (through the API)" if api else ""), "ROC AUC", "TPR at 0.1% FPR"]
    columns += [*([] if api else ["Pareto front"]), "seeds"]
    caption = (
        f"{_CAPTION} Utility: the test accuracy of the answers the attacker gets (through the output policy where "
        "there is one)."
    )
    if dp:
        caption += " DP ε (target): the epsilon each DP-SGD arm's noise was calibrated to spend (delta 1/n)."
    if spent:
        caption += " ε spent: the epsilon the training spent, as the accountant recorded it."
    if not api:
        caption += " Pareto front: the arm is on the front for that leakage metric (strongest attack)."
    align = tuple("l" if c in _TEXT_COLUMNS else "r" for c in columns)
    return Table(title, tuple(columns), tuple(body), caption, align=align)


# ------------------------------------------------------------------------------------ frontier
def leakage_level_sentences(arms: Sequence[Arm]) -> list[str]:
    """For each leakage level, which arm gives the best utility while its strongest attack stays at or below it."""
    out = []
    utility = [a.utility.mean for a in arms]
    for metric, levels in (("auc", AUC_LEVELS), (TPR, TPR_LEVELS)):
        strongest = [a.strongest(metric) for a in arms]
        leakage = [s.leakage(metric).mean for s in strongest]
        name = metric_name(metric).replace("ROC ", "")
        for level in levels:
            head = f"{name} at most {level:g}: "
            i = best_at_leakage(utility, leakage, level)
            if i is None:
                out.append(head + "no defence keeps the strongest attack this low.")
                continue
            out.append(
                f"{head}{arms[i].label} gives the best utility, {_utility_name(arms[i])} "
                f"{fmt_num(utility[i], 3)} (strongest attack, {strongest[i].attack}: {name} {fmt_num(leakage[i], 3)})."
            )
    return out


@dataclass(frozen=True)
class DefenceComparison:
    """Dropout against the DP-SGD arm of closest utility, on the AUC of each arm's strongest attack.

    ``difference``/``low``/``high`` are the mean over seeds of dropout's AUC minus DP's (paired by
    seed) and its 95% interval (NaN with fewer than 3 seeds); ``verdict`` is the findings' rule (:func:`decide`) on
    the seed paper's claim "dropout lowers leakage", here against DP at equal utility: ``supported``
    (dropout leaks less by more than the margin), ``contradicted``, ``negligible`` or ``inconclusive``.
    """

    dropout: Arm
    dp: Arm
    utility_gap: float
    difference: float
    low: float
    high: float
    n: int
    verdict: str
    seeds_needed: int | None
    sentence: str


def decide(low: float, high: float, *, margin: float) -> str:
    """The findings' verdict rule (``docs/run-format.md``) for a claimed decrease, on a 95% interval of ``a - b``.

    ``supported``: the interval lies below ``-margin``; ``contradicted``: above ``+margin``;
    ``negligible``: within ``[-margin, +margin]``; ``inconclusive``: anything else or no interval.

    >>> decide(-0.05, -0.02, margin=0.01), decide(0.02, 0.05, margin=0.01), decide(-0.005, 0.008, margin=0.01)
    ('supported', 'contradicted', 'negligible')
    >>> decide(float("nan"), float("nan"), margin=0.01), decide(-0.03, 0.0, margin=0.01)
    ('inconclusive', 'inconclusive')
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if high < -margin:
        return "supported"
    if low > margin:
        return "contradicted"
    return "negligible" if -margin <= low and high <= margin else "inconclusive"


def _paired_verdict(a: Sequence[float], b: Sequence[float], *, margin: float) -> dict[str, Any]:
    """Mean of ``a - b`` over paired seeds, its 95% interval (3 seeds or more), verdict and seeds needed."""
    n = len(a)
    out: dict[str, Any] = {"difference": math.nan, "low": math.nan, "high": math.nan, "n": n}
    out |= {"verdict": "inconclusive", "seeds_needed": None}
    if n == 0:
        return out
    ci = paired_difference_ci(a, b)
    out["difference"] = float(ci["diff"])
    if n >= MIN_INTERVAL_VALUES:
        out.update(low=float(ci["low"]), high=float(ci["high"]))
    out["verdict"] = decide(out["low"], out["high"], margin=margin)
    if n >= 2:
        std = float(np.std(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), ddof=1))
        out["seeds_needed"] = seeds_needed(std, abs(abs(out["difference"]) - margin))
    return out


def dropout_vs_dp(arms: Sequence[Arm], *, margin: float = DROPOUT_MARGIN) -> DefenceComparison | None:
    """Compare the dropout arm with the DP-SGD arm whose test accuracy is closest; None without both."""
    dropout = next((a for a in arms if a.info is not None and a.info.arch == "dropout" and a.family == "dropout"), None)
    dps = [a for a in arms if a.info is not None and a.info.is_dp]
    if dropout is None or not dps:
        return None
    j = closest_arm([a.utility.mean for a in dps], dropout.utility.mean)
    if j is None:
        return None
    dp = dps[j]
    a, b = dropout.strongest("auc"), dp.strongest("auc")
    seeds = sorted(set(a.auc_by_seed) & set(b.auc_by_seed))
    v = _paired_verdict([a.auc_by_seed[s] for s in seeds], [b.auc_by_seed[s] for s in seeds], margin=margin)
    gap = dropout.utility.mean - dp.utility.mean
    diff = v["difference"]
    ci = f", 95% CI [{v['low']:+.3f}, {v['high']:+.3f}]" if math.isfinite(v["low"]) else ", no interval"
    plain = {
        "supported": f"dropout leaks less than DP-SGD at about the same utility (by more than {margin:g} AUC)",
        "contradicted": "dropout leaks more than DP-SGD at about the same utility: DP-SGD is the better defence here",
        "negligible": f"dropout and DP-SGD leak the same to within {margin:g} AUC at about the same utility",
        "inconclusive": "the run cannot tell which of the two leaks less"
        + (" (fewer than 3 seeds: no interval)" if v["n"] < 3 else " (the interval straddles the margin)"),
    }[v["verdict"]]
    sentence = (
        f"{dropout.label} (test accuracy {fmt_num(dropout.utility.mean, 3)}) against {dp.label}, the DP-SGD arm "
        f"closest in test accuracy ({fmt_num(dp.utility.mean, 3)}, {abs(gap) * 100:.1f} points "
        f"{'lower' if gap > 0 else 'higher'}): AUC of the strongest attack {fmt_num(a.auc.mean, 3)} ({a.attack}) vs "
        f"{fmt_num(b.auc.mean, 3)} ({b.attack}), difference {diff:+.3f}{ci}, {v['n']} paired seed"
        f"{'s' if v['n'] != 1 else ''}: {plain}."
    )
    if v["verdict"] == "inconclusive" and v["seeds_needed"] is not None:
        sentence += f" About {v['seeds_needed']:,} seeds would decide at the observed spread."
    if abs(gap) > 0.02:
        sentence += " Their utilities differ by more than 2 points, so the comparison is only roughly at equal utility."
    return DefenceComparison(
        dropout, dp, gap, diff, v["low"], v["high"], v["n"], v["verdict"], v["seeds_needed"], sentence
    )


def _frontier_blocks(run: RunData, study: str, arms: list[Arm], title: str) -> list[Block]:
    panels = frontier_panels(arms)
    fronts = {p.metric: set(p.front) for p in panels}
    blocks: list[Block] = [
        _arm_table(arms, title=f"{title}: every defence and attack", fronts=fronts, api=False),
        F.figure_block(
            f"study{study}_frontier" if study.isdigit() else f"{slug(study).replace('-', '_')}_frontier",
            plot_frontier(panels, labels=[a.label for a in arms], families=[a.family for a in arms], title=title),
            title=f"{title}: the privacy-utility frontier",
            caption="Each point is a defence: its utility (x) against the leakage its strongest attack finds (y; "
            "top: ROC AUC, bottom: TPR at 0.1% FPR), means over seeds with 95% intervals in both directions where "
            "there are 3 seeds or more. Ringed and joined: the Pareto front, the defences no other beats on both "
            "utility and leakage. Dotted: chance.",
        ),
        Paragraph.of(
            Strong("The best utility at each leakage level."),
            " For each level, the defence with the highest utility whose strongest attack stays at or below it (means "
            "over seeds):",
        ),
        Bullets(tuple((s,) for s in leakage_level_sentences(arms))),
    ]
    policies = [a.label for a in arms if a.info is not None and a.info.output_policy != "full"]
    if policies and not any(r.attack.startswith("label-") for a in arms for r in a.attacks):
        blocks.append(
            Paragraph.of(
                f"Output policies ({', '.join(policies)}) are judged here by the attacks this study ran, none of which "
                "reads labels alone; the label-only attacks (label-gap, label-noise, label-augment) may find more "
                "(the study of defences at the API runs them)."
            )
        )
    cmp = dropout_vs_dp(arms)
    if cmp is not None:
        blocks.append(
            Paragraph.of(
                Strong("The seed's dropout claim at equal utility."),
                " The seed paper found that dropout lowers attack accuracy against an overfitted network. Against "
                "DP-SGD at about the same test accuracy: ",
                Strong(cmp.verdict),
                f" — {cmp.sentence}",
            )
        )
    return blocks


# ----------------------------------------------------------------------------------------- API
def _baseline(arms: Sequence[Arm]) -> Arm | None:
    """The arm whose API answers in full: ``output_policy`` ``full``, else the one arm without a served accuracy."""
    full = [a for a in arms if a.info is not None and a.info.output_policy == "full"]
    if full:
        return full[0]
    plain = [a for a in arms if a.utility_metric != SERVED]
    return plain[0] if len(plain) == 1 else None


def _buys(removed: float, drop: float) -> str:
    if drop < 0.01:
        return "buys no measurable protection" if drop > -0.01 else "leaks more, not less"
    if math.isfinite(removed) and removed >= 0.5:
        return "removes most of the leakage the attacks find"
    return "removes some leakage"


def _costs(cost: float) -> str:
    if not math.isfinite(cost):
        return "utility not stored"
    if abs(cost) <= 0.002:
        return "at no measurable cost in utility"
    if cost < 0:
        return f"and utility is {abs(cost) * 100:.1f} points higher"
    return f"at a cost of {cost * 100:.1f} points of test accuracy"


def policy_sentences(arms: Sequence[Arm]) -> list[str]:
    """One sentence per policy: the strongest attack's AUC and TPR against the full answers', and the utility cost."""
    base = _baseline(arms)
    out = []
    for arm in arms:
        s, t = arm.strongest("auc"), arm.strongest(TPR)
        head = (
            f"{arm.label}: strongest attack {s.attack}, AUC {fmt_num(s.auc.mean, 3)}, TPR at 0.1% FPR "
            f"{fmt_num(t.tpr.mean, 3)} ({t.attack}); utility {fmt_num(arm.utility.mean, 3)}"
        )
        if base is None:
            out.append(head + ".")
            continue
        if arm is base:
            out.append(head + " — the reference: the API answers in full.")
            continue
        bs, bt = base.strongest("auc"), base.strongest(TPR)
        drop = bs.auc.mean - s.auc.mean
        removed = leakage_removed(bs.auc.mean, s.auc.mean)
        share = f", {removed:.0%} of the AUC above chance" if math.isfinite(removed) and drop >= 0.01 else ""
        out.append(
            f"{head}. Against full answers (AUC {fmt_num(bs.auc.mean, 3)}, TPR {fmt_num(bt.tpr.mean, 3)}, utility "
            f"{fmt_num(base.utility.mean, 3)}) it {_buys(removed, drop)} (AUC {-drop:+.3f}{share}; TPR "
            f"{t.tpr.mean - bt.tpr.mean:+.3f}) {_costs(base.utility.mean - arm.utility.mean)}."
        )
    return out


def _api_blocks(run: RunData, study: str, arms: list[Arm], title: str) -> list[Block]:
    attacks = list(dict.fromkeys(r.attack for a in arms for r in a.attacks))
    blocks: list[Block] = [
        _arm_table(arms, title=f"{title}: each policy and attack", fronts={}, api=True),
        F.figure_block(
            f"study{study}_policies" if study.isdigit() else f"{slug(study).replace('-', '_')}_policies",
            plot_policies(arms, attacks, title=title),
            title=f"{title}: leakage and utility per output policy",
            caption="Top: the test accuracy of the API's answers (utility); middle: ROC AUC of each attack; bottom: "
            "its TPR at 0.1% FPR. Means over seeds with 95% intervals where there are 3 "
            "seeds or more; dotted: chance.",
        ),
        Paragraph.of(Strong("What each policy buys."), " Against the API answering in full (means over seeds):"),
        Bullets(tuple((s,) for s in policy_sentences(arms))),
    ]
    gaps = [r.auc.mean for a in arms for r in a.attacks if r.attack == "label-gap" and math.isfinite(r.auc.mean)]
    if gaps:
        blocks.append(
            Paragraph.of(
                "A policy that still answers the right label cannot hide what the label alone tells: the gap attack "
                f"(correct = member) reaches AUC {min(gaps):.3f} to {max(gaps):.3f} under every policy, a floor no "
                "output policy short of wrong answers removes."
            )
        )
    if _seeds(arms) < 3:
        blocks.append(
            Paragraph.of(
                "Fewer than 3 seeds: no intervals, so differences of a few hundredths of AUC may be seed-to-seed "
                "noise; rerun with --seeds 3 or more to tell."
            )
        )
    return blocks


def arms_section(run: RunData, study: str) -> Section | None:
    """The section of a study of defences (frontier or API); None when ``study`` is not a study of arms."""
    arms = study_arms(run, study)
    if not arms:
        return None
    kind = arm_study_kind(run, study, arms)
    info = run.study_info(study)
    title = study_title(run, study)
    attacks = sorted({r.attack for a in arms for r in a.attacks})
    intro: list[Any] = [
        f"{len(arms)} {'policies' if kind == 'api' else 'defences'}, attacked by {', '.join(attacks)}; "
        f"{_seeds(arms)} seed{'s' if _seeds(arms) != 1 else ''} each. Utility is the test accuracy of the answers "
        "the attacker gets; leakage is each attack's ROC AUC and TPR at 0.1% FPR, and where one number stands for "
        "a defence, that of its strongest attack (highest mean)."
    ]
    blocks: list[Block] = [Paragraph.of(info.description or info.title), Paragraph.of(*intro)]
    if not run.settings:
        blocks.append(Paragraph.of(_NO_SETTINGS))
    blocks += _api_blocks(run, study, arms, title) if kind == "api" else _frontier_blocks(run, study, arms, title)
    return Section(title, slug(title), tuple(blocks))
