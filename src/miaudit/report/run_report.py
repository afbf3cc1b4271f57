"""The report of a ``miaudit reproduce`` run: executive summary, one section per study, appendix.

Everything comes from the stored run (:class:`~.load.RunData`): the paper's values from the
``paper`` column of ``summary.csv``, the verdicts from ``findings.json``, the curves from
``scores/``. Nothing is retrained or recomputed beyond ROC curves and histograms of stored scores.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from miaudit.report import curves as C
from miaudit.report import figures as F
from miaudit.report.document import (
    Block,
    Bullets,
    Document,
    FigureBlock,
    Paragraph,
    Preformatted,
    Section,
    Strong,
    slug,
)
from miaudit.report.labels import (
    STUDY_TITLES,
    dim_header,
    dim_value,
    fmt_interval_text,
    fmt_num,
    setting_label,
    sort_value,
)
from miaudit.report.load import RunData
from miaudit.report.record_report import compare_section, dataset_name
from miaudit.report.records import SummaryRow, first, index_summary
from miaudit.report.tables import (
    best_pair_table,
    findings_table,
    fixed_setting,
    key_value_table,
    paper_agreement,
    pivot_table,
    study_metrics_table,
    varying_dims,
)

__all__ = ["best_setting", "run_document"]

#: What each study asks, in one sentence (fallback: the study title).
STUDY_QUESTIONS = {
    "1": "Which attack classifier works best on the shadow models' outputs, and with how many shadow models? "
    "The paper found the Linear SVM with 6 shadow models best (accuracy 0.6962) and tabulates the rest.",
    "2": "Does training the attack on more shadow models help? The paper (Linear SVM, shadows 2-9) saw some "
    "increase, not consistent from one count to the next.",
    "3": "Does a larger target training set leak less? The paper found lower attack accuracy with 6,000 "
    "training records than with 3,000.",
    "4": "Does a target with fewer output classes leak less? The paper found attack accuracy 0.59-0.64 "
    "with 10 classes and 0.52-0.55 with 5.",
    "5": "Does overfitting help the attack, and dropout stop it? The paper found a denser, overfitted "
    "network more vulnerable and dropout (rate 0.5) less.",
    "6": "What if the attacker does not know the target's architecture? Shadow models with a different "
    "network than the target's (the paper's stated limitation).",
}
_PREFERRED_X = {"3": "target_size"}
_CAPTION_SPREAD = "mean over seeds with 95% intervals (error bars)"


def best_setting(rows: list[SummaryRow]) -> SummaryRow | None:
    """The setting with the highest mean AUC (its ``auc`` summary row); None without AUC rows."""
    aucs = [r for r in rows if r.metric == "auc" and math.isfinite(r.mean)]
    return max(aucs, key=lambda r: r.mean) if aucs else None


def _study_info(run: RunData, study: str) -> tuple[str, str]:
    info = run.manifest.get("studies")
    rec = info.get(study, {}) if isinstance(info, dict) else {}
    rec = rec if isinstance(rec, dict) else {}
    return str(rec.get("title") or STUDY_TITLES.get(study, f"Study {study}")), str(rec.get("paper_ref") or "")


def _study_figure(study: str, rows: list[SummaryRow], title: str, ref: str) -> FigureBlock | None:
    """The study's figure, chosen from the columns that vary: grouped bars or lines vs a number."""
    metric = "accuracy"
    rows = [r for r in rows if r.metric == metric]
    varying = varying_dims(rows)
    if not varying:
        return None
    numeric = [d for d in ("n_shadows", "target_size", "classes") if d in varying]
    x = _PREFERRED_X.get(study) if _PREFERRED_X.get(study) in varying else (numeric[0] if numeric else None)
    others = [d for d in varying if d != x]
    group = others[0] if others else None
    has_paper = any(r.paper is not None for r in rows)
    paper_note = (
        " Hollow diamonds: the paper's published values."
        if has_paper
        else " The paper published no numbers for these settings, so none are drawn."
    )
    full_title = f"{title}" + (f" (paper: {ref})" if ref else "")

    def label(v: Any) -> str:
        return setting_label({group: v}, dims=(group,)) if group else "ours"

    def sort(dim: str, v: Any) -> Any:
        return sort_value(dim, v)

    if x is None or (study == "1" and group == "attack_model"):
        x_dim = x or varying[0]
        group_dim = group if x else (varying[1] if len(varying) > 1 else None)
        series = F.metric_series(
            rows,
            metric=metric,
            x=x_dim,
            group_by=group_dim,
            sort=sort,
            label=lambda v: setting_label({group_dim: v}, dims=(group_dim,)) if group_dim else "ours",
        )
        fig = F.plot_grouped_bars(
            series,
            title=full_title,
            xlabel=dim_header(x_dim),
            ylabel="attack accuracy (bars start at chance, 0.5)",
            baseline=0.5,
            xtick_label=lambda v: dim_value(x_dim, v),
            sort=lambda v: sort_value(x_dim, v),
        )
        caption = f"Attack accuracy, {_CAPTION_SPREAD}; bars grow up or down from chance (0.5).{paper_note}"
    else:
        series = F.metric_series(rows, metric=metric, x=x, group_by=group, label=label, sort=sort)
        fig = F.plot_lines(
            series,
            title=full_title,
            xlabel=f"{dim_header(x)}" + (" (log scale)" if x == "target_size" else ""),
            ylabel="attack accuracy",
            chance=0.5,
            log_x=x == "target_size",
        )
        caption = f"Attack accuracy, {_CAPTION_SPREAD}; dotted line: chance (0.5).{paper_note}"
    return F.figure_block(f"study{study}_{slug(title).replace('-', '_')[:40]}", fig, title=full_title, caption=caption)


def _study_section(run: RunData, study: str, rows: list[SummaryRow]) -> Section:
    title, ref = _study_info(run, study)
    fixed = setting_label(fixed_setting(rows))
    seeds = max((r.n for r in rows), default=0)
    blocks: list[Block] = [
        Paragraph.of(STUDY_QUESTIONS.get(study, title)),
        Paragraph.of(
            f"{len({r.setting_id for r in rows})} settings, {seeds} seed{'s' if seeds != 1 else ''} each"
            + (f"; held fixed: {fixed}." if fixed else ".")
        ),
    ]
    fig = _study_figure(study, rows, title, ref)
    if fig is not None:
        blocks.append(fig)
    paper = any(r.paper is not None for r in rows if r.metric == "accuracy")
    table = pivot_table(
        rows,
        metric="accuracy",
        title=f"{title}: attack accuracy"
        + (f", ours beside the paper's ({ref or 'published values'})" if paper else ""),
        caption="Ours: mean ± half-width of the 95% interval over seeds."
        + (" Paper: its single run." if paper else " The paper published no numbers for these settings."),
    )
    if table is not None:
        blocks.append(table)
    auc_table = pivot_table(rows, metric="auc", title=f"{title}: ROC AUC (the paper reports none)", with_paper=False)
    if auc_table is not None:
        blocks.append(auc_table)
    if study == "1":
        pair = best_pair_table(rows, title="The best pair: accuracy, precision and recall (paper: Table 2)")
        if pair is not None:
            blocks.append(pair)
    inside, total = paper_agreement(rows)
    if total:
        blocks.append(
            Paragraph.of(
                "The paper's value lies inside our 95% interval in ",
                Strong(f"{inside} of {total}"),
                " cells. The paper reports one run without intervals, so a value outside ours says the difference "
                "is larger than seed-to-seed variation, not that either number is wrong.",
            )
        )
    found = [f for f in run.findings if f.study == study]
    if found:
        blocks.append(Bullets(tuple((f"{f.id}: ", Strong(f.verdict), f" — {f.sentence or f.claim}") for f in found)))
    return Section(f"Study {study}: {title}", slug(f"Study {study}: {title}"), tuple(blocks))


def _what_was_attacked(run: RunData, rows: list[SummaryRow]) -> str:
    def values(dim: str) -> str:
        vals = sorted(
            {getattr(r, dim) for r in rows if getattr(r, dim) not in (None, "")}, key=lambda v: sort_value(dim, v)
        )
        return ", ".join(dim_value(dim, v) for v in vals) or "–"

    return (
        f"Neural-network classifiers trained on {dataset_name(run.manifest.get('config'))} (networks: "
        f"{values('arch')}; {values('target_size')} training records; {values('classes')} classes), attacked "
        "as black boxes (queries in, probabilities out) with the shadow-model attack of Shokri et al. (2017), "
        f"attack classifiers {values('attack_model')}, {values('n_shadows')} shadow models."
    )


def _summary(run: RunData, best: SummaryRow | None) -> list[Block]:
    rows = list(run.summary)
    seeds = run.seeds
    n_settings = len({r.setting_id for r in rows})
    blocks: list[Block] = [
        Paragraph.of(
            "This report reproduces the membership-inference study of Daryani and Chadha (the seed paper) "
            f"on {dataset_name(run.manifest.get('config'))} with {len(seeds)} "
            f"seed{'s' if len(seeds) != 1 else ''} per setting: "
            f"{len(run.studies)} studies, {n_settings} settings. It was built from stored results only; "
            "nothing was retrained or recomputed."
        ),
    ]
    items: list[tuple[Any, ...]] = [("What was attacked: ", _what_was_attacked(run, rows))]
    if best is not None:
        index = index_summary(rows)
        tpr = index.get((best.setting_id, "tpr_at_fpr_0.001"))
        acc = index.get((best.setting_id, "accuracy"))
        items.append(
            (
                "Strongest attack (highest mean AUC): ",
                Strong(setting_label(best.setting())),
                f" (study {best.study}, setting {best.setting_id}): ROC AUC ",
                Strong(fmt_interval_text(best.interval)),
                "; TPR at 0.1% FPR ",
                Strong(fmt_interval_text(tpr.interval) if tpr else "not stored"),
                "; attack accuracy " + (fmt_interval_text(acc.interval) if acc else "not stored") + ".",
            )
        )
        paper_best = max(
            (r for r in rows if r.metric == "accuracy" and r.paper is not None),
            key=lambda r: r.paper or 0.0,
            default=None,
        )
        if paper_best is not None:
            items.append(
                (
                    f"The paper's best attack accuracy: {fmt_num(paper_best.paper, 4)} "
                    f"({setting_label(paper_best.setting(), dims=('attack_model', 'n_shadows'))}); "
                    "ours for that setting: ",
                    Strong(fmt_interval_text(paper_best.interval)),
                    ".",
                )
            )
    if run.findings:
        counts = Counter(f.verdict for f in run.findings)
        tally = ", ".join(
            f"{counts[v]} {v}" for v in ("supported", "not supported", "contradicted", "inconclusive") if counts[v]
        )
        items.append(
            (
                "The paper's findings: ",
                Strong(tally),
                " — " + "; ".join(f"{f.id} {f.claim}: {f.verdict}" for f in run.findings) + ".",
            )
        )
    inside, total = paper_agreement(rows)
    if total:
        items.append(
            (
                f"Agreement with the paper's numbers: its value lies inside our 95% interval in {inside} of "
                f"{total} cells where it published one.",
            )
        )
    items.append(
        (
            "How to read: AUC 0.5 is chance and 1 a perfect attack; the TPR at 0.1% FPR is the fraction of "
            "members named while wrongly accusing only 1 in 1,000 non-members (chance: 0.001).",
        )
    )
    blocks.append(Bullets(tuple(items)))
    return blocks


def _appendix(run: RunData) -> Section:
    m = run.manifest
    subs = []
    tables = [
        study_metrics_table([r for r in run.summary if r.study == s], title=f"Study {s}: {_study_info(run, s)[0]}")
        for s in run.studies
    ]
    subs.append(
        Section(
            "All settings, all main metrics",
            "all-settings-all-main-metrics",
            (
                Paragraph.of("Mean ± half-width of the 95% interval over seeds, per setting."),
                *(t for t in tables if t is not None),
            ),
        )
    )
    facts = {
        "status": m.get("status"),
        "command": m.get("command", "–"),
        "created": m.get("created", "–"),
        "finished": m.get("finished", "–"),
        "seeds": ", ".join(map(str, run.seeds)),
        "run directory": str(run.path),
    }
    blocks: list[Block] = [key_value_table("Run", facts)]
    if isinstance(m.get("versions"), dict):
        blocks.append(key_value_table("Versions", m["versions"]))
    if isinstance(m.get("hardware"), dict):
        blocks.append(key_value_table("Hardware", m["hardware"]))
    if isinstance(m.get("timings"), dict):
        blocks.append(key_value_table("Timings", m["timings"], seconds=lambda k: k.endswith("_s")))
    blocks.append(Paragraph.of("The exact configuration (manifest.json, key config):"))
    blocks.append(Preformatted(json.dumps(m.get("config"), indent=2, sort_keys=True, default=str)))
    subs.append(
        Section(
            "Configuration, versions, seeds, hardware and timings",
            "configuration-versions-seeds-hardware-and-timings",
            tuple(blocks),
        )
    )
    return Section("Appendix", "appendix", (), tuple(subs))


def run_document(run: RunData) -> Document:
    """The full report of a run directory."""
    rows = list(run.summary)
    best = best_setting(rows)
    sections: list[Section] = []
    if best is not None:
        what = setting_label(best.setting(), dims=("attack_model", "n_shadows", "arch", "target_size", "classes"))
        figs = C.score_figures(run.scores(best.setting_id), prefix="best_", what=what)
        sections.append(
            Section(
                "The strongest attack",
                "the-strongest-attack",
                (
                    Paragraph.of(
                        f"The setting with the highest mean AUC, {best.setting_id} ({what}), from its stored "
                        "per-record scores."
                    ),
                    *figs,
                ),
            )
        )
    for study in run.studies:
        sections.append(_study_section(run, study, [r for r in rows if r.study == study]))
    groups, r = F.gap_vs_auc(rows, study_title=lambda s: f"study {s}: {_study_info(run, s)[0]}")
    if groups:
        fig = F.plot_gap_vs_auc(groups, r, title="Overfitting and leakage across all settings")
        text = f"Pearson's r between gap and AUC over the settings' means is {r:.2f}." if math.isfinite(r) else ""
        sections.append(
            Section(
                "Overfitting and leakage",
                "overfitting-and-leakage",
                (
                    Paragraph.of(
                        "Each point is one setting: how much better the target does on its training data than on "
                        "unseen data (x), against how well the attack separates members from non-members (y). " + text
                    ),
                    F.figure_block(
                        "gap_vs_auc",
                        fig,
                        title="Train-test accuracy gap vs attack AUC, all settings",
                        caption="Points: setting means; bars: 95% intervals over seeds in both directions; "
                        "dotted line: chance.",
                    ),
                ),
            )
        )
    if run.findings:
        sections.append(Section("Findings and verdicts", "findings-and-verdicts", (findings_table(run.findings),)))
    if run.compare is not None:
        sections.append(compare_section(run.compare))
    sections.append(_appendix(run))
    status = run.manifest.get("status", "?")
    finished = first(run.manifest, "finished", "created", default="")
    subtitle = (
        f"miaudit reproduce run {run.path.name} ({status}{', finished ' + str(finished) if finished else ''}); "
        f"seeds {', '.join(map(str, run.seeds))}"
    )
    return Document(
        "Membership inference audit: reproduction of the seed study",
        subtitle,
        tuple(_summary(run, best)),
        tuple(sections),
    )
