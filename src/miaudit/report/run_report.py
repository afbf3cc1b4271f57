"""What a report says, for every run directory: one composer over one format.

A run with one setting and one seed (``miaudit attack --out``) gets a compact single-attack view:
the metrics, the ROC and the score histogram. Every other run (``miaudit reproduce``, ``miaudit
compare``) gets an executive summary, the strongest attack's curves, one section per study (its
tables and figure; an attack comparison when the study varies the attack), the overfitting view,
the paper's findings when there are any, and an appendix. Everything comes from the stored run
(:class:`~.load.RunData`): the paper's values from the ``paper`` column of ``summary.csv``, the
verdicts from ``findings.json``, the curves from ``scores/``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from miaudit.report import curves as C
from miaudit.report import figures as F
from miaudit.report.document import Block, Bullets, Document, Paragraph, Preformatted, Section, Strong, Table
from miaudit.report.frontier import arms_section
from miaudit.report.labels import (
    dim_value,
    fmt_interval_text,
    fmt_num,
    fmt_seconds,
    metric_name,
    setting_label,
    sort_value,
)
from miaudit.report.load import RunData
from miaudit.report.records import VERDICTS, ResultRow, SummaryRow, index_summary
from miaudit.report.study_sections import dataset_name, study_section, study_title
from miaudit.report.tables import findings_table, key_value_table, paper_agreement, study_metrics_table

__all__ = ["best_setting", "is_single_attack", "run_document"]

_ATTACK_DIMS = ("attack", "attack_model", "n_shadows")
_TARGET_DIMS = ("arch", "shadow_arch", "target_size", "classes")
#: The single-attack view's metrics table, in this order (others the run stored follow).
_SINGLE_METRICS = (
    "auc",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.001",
    "tpr_at_fpr_0",
    "accuracy",
    "precision",
    "recall",
    "balanced_accuracy",
    "advantage",
    "n_members",
    "n_nonmembers",
    "queries",
    "attack_time_s",
)
_TARGET_METRICS = ("target_train_accuracy", "target_test_accuracy", "generalization_gap")
_HOW_TO_READ = (
    "How to read: AUC 0.5 is chance and 1 a perfect attack; the TPR at 0.1% FPR is the fraction of members "
    "named while wrongly accusing only 1 in 1,000 non-members (chance: 0.001).",
)


def best_setting(rows: list[SummaryRow]) -> SummaryRow | None:
    """The setting with the highest mean AUC (its ``auc`` summary row); None without AUC rows."""
    aucs = [r for r in rows if r.metric == "auc" and math.isfinite(r.mean)]
    return max(aucs, key=lambda r: r.mean) if aucs else None


def _labelled(run: RunData, row: SummaryRow, *, dims: tuple[str, ...] | None = None) -> str:
    """A setting's description, with its arm's label from ``settings.json`` first when it has one."""
    text = setting_label(row.setting(), dims=dims)
    label = run.label(row.setting_id)
    return f"{label}: {text}" if label else text


def is_single_attack(run: RunData) -> bool:
    """Whether the run is one attack on one target with one seed (the compact view)."""
    return len({r.setting_id for r in run.summary}) == 1 and len(run.seeds) == 1


def _values(rows: list[SummaryRow], dim: str) -> str:
    vals = {getattr(r, dim) for r in rows if getattr(r, dim) not in (None, "")}
    return ", ".join(dim_value(dim, v) for v in sorted(vals, key=lambda v: sort_value(dim, v))) or "–"


def _what_was_attacked(run: RunData, rows: list[SummaryRow]) -> str:
    attacks = sorted({r.attack for r in rows})
    if attacks == ["shokri"]:
        how = (
            "with the shadow-model attack of Shokri et al. (2017), attack classifiers "
            f"{_values(rows, 'attack_model')}, {_values(rows, 'n_shadows')} shadow models."
        )
    else:
        how = f"with {len(attacks)} attack{'s' if len(attacks) != 1 else ''}: {', '.join(attacks)}."
    return (
        f"Neural-network classifiers trained on {dataset_name(run.manifest.config)} (networks: "
        f"{_values(rows, 'arch')}; {_values(rows, 'target_size')} training records; {_values(rows, 'classes')} "
        f"classes), attacked as black boxes (queries in, probabilities out) {how}"
    )


def _intro(run: RunData, n_settings: int) -> str:
    seeds = f"{len(run.seeds)} seed{'s' if len(run.seeds) != 1 else ''} per setting"
    studies = f"{len(run.studies)} stud{'ies' if len(run.studies) != 1 else 'y'}, {n_settings} settings"
    stored = "It was built from stored results only; nothing was retrained or recomputed."
    if run.kind == "reproduce":
        return (
            "This report reproduces the membership-inference study of Daryani and Chadha (the seed paper) on "
            f"{dataset_name(run.manifest.config)} with {seeds}: {studies}. {stored}"
        )
    attacks = len({r.attack for r in run.summary})
    return (
        f"This report compares {attacks} membership-inference attack{'s' if attacks != 1 else ''} on "
        f"{dataset_name(run.manifest.config)} with {seeds} ({studies}). {stored}"
    )


def _summary(run: RunData, best: SummaryRow | None) -> list[Block]:
    rows = list(run.summary)
    blocks: list[Block] = [Paragraph.of(_intro(run, len({r.setting_id for r in rows})))]
    items: list[tuple[Any, ...]] = [("What was attacked: ", _what_was_attacked(run, rows))]
    if best is not None:
        index = index_summary(rows)
        tpr = index.get((best.setting_id, "tpr_at_fpr_0.001"))
        acc = index.get((best.setting_id, "accuracy"))
        items.append(
            (
                "Strongest attack (highest mean AUC): ",
                Strong(_labelled(run, best)),
                f" ({study_title(run, best.study)}, setting {best.setting_id}): ROC AUC ",
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
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
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
    items.append(_HOW_TO_READ)
    blocks.append(Bullets(tuple(items)))
    return blocks


def _run_facts(run: RunData) -> list[Block]:
    m = run.manifest
    facts = {
        "written by": f"miaudit {m.kind}",
        "status": m.status,
        "command": m.command or "–",
        "created": m.created or "–",
        "finished": m.finished or "–",
        "seeds": ", ".join(map(str, run.seeds)),
        "format": m.format,
        "run directory": str(run.path),
    }
    blocks: list[Block] = [key_value_table("Run", facts)]
    for title, mapping in (("Versions", m.versions), ("Hardware", m.hardware)):
        if mapping:
            blocks.append(key_value_table(title, mapping))
    if m.timings:
        blocks.append(key_value_table("Timings", m.timings, seconds=lambda k: k.endswith("_s")))
    blocks.append(Paragraph.of("The exact configuration (manifest.json, key config):"))
    blocks.append(Preformatted(json.dumps(m.config, indent=2, sort_keys=True, default=str)))
    return blocks


def _appendix(run: RunData) -> Section:
    tables = [
        study_metrics_table(
            [r for r in run.summary if r.study == s],
            title=study_title(run, s),
            labels={sid: info.label for sid, info in run.settings.items() if info.label},
        )
        for s in run.studies
    ]
    subs = (
        Section(
            "All settings, all main metrics",
            "all-settings-all-main-metrics",
            (
                Paragraph.of("Mean ± half-width of the 95% interval over seeds, per setting."),
                *(t for t in tables if t is not None),
            ),
        ),
        Section(
            "Configuration, versions, seeds, hardware and timings",
            "configuration-versions-seeds-hardware-and-timings",
            tuple(_run_facts(run)),
        ),
    )
    return Section("Appendix", "appendix", (), subs)


def _overfitting_section(run: RunData, rows: list[SummaryRow]) -> Section | None:
    """Gap against AUC over all settings; None when the targets do not differ (one gap for every setting)."""
    groups, r = F.gap_vs_auc(rows, study_title=lambda s: study_title(run, s))
    gaps = {round(float(v), 9) for g in groups for v in g.gap[0]}
    if len(gaps) < 2:
        return None
    fig = F.plot_gap_vs_auc(groups, r, title="Overfitting and leakage across all settings")
    text = f"Pearson's r between gap and AUC over the settings' means is {r:.2f}." if math.isfinite(r) else ""
    return Section(
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


def _findings_section(run: RunData) -> Section:
    return Section("Findings and verdicts", "findings-and-verdicts", (findings_table(run.findings),))


def _study_document(run: RunData) -> Document:
    rows = list(run.summary)
    best = best_setting(rows)
    sections: list[Section] = []
    if best is not None:
        what = _labelled(run, best, dims=(*_ATTACK_DIMS, "arch", "target_size", "classes"))
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
        # a study of defences (arms sharing every CSV column) gets the frontier or the API section instead
        arms = arms_section(run, study)
        sections.append(arms if arms is not None else study_section(run, study, [r for r in rows if r.study == study]))
    overfitting = _overfitting_section(run, rows)
    if overfitting is not None:
        sections.append(overfitting)
    if run.findings:
        sections.append(_findings_section(run))
    sections.append(_appendix(run))
    m = run.manifest
    title = {
        "reproduce": "Membership inference audit: reproduction of the seed study",
        "compare": "Membership inference audit: attacks compared",
    }.get(m.kind, "Membership inference audit")
    subtitle = (
        f"miaudit {m.kind} run {run.path.name} ({m.status}{', finished ' + m.finished if m.finished else ''}); "
        f"seeds {', '.join(map(str, run.seeds))}"
    )
    return Document(title, subtitle, tuple(_summary(run, best)), tuple(sections))


# --------------------------------------------------------------------------- single attack
def _metrics_table(title: str, rows: Mapping[str, ResultRow], names: tuple[str, ...]) -> Table | None:
    lines = []
    for name in names:
        r = rows.get(name)
        if r is None:
            continue
        if name in ("n_members", "n_nonmembers", "queries") and float(r.value).is_integer():
            text = f"{int(r.value):,}"
        elif name.endswith("_s"):
            text = fmt_num(r.value, 2)
        else:
            text = fmt_num(r.value, 4)
        lines.append((metric_name(name), text))
    return Table(title, ("metric", "value"), tuple(lines)) if lines else None


def _single_attack_document(run: RunData) -> Document:
    """The compact view of one attack on one target with one seed."""
    rows = {r.metric: r for r in run.results}
    head = run.summary[0]
    seed = run.seeds[0]
    what = setting_label(head.setting(), dims=_ATTACK_DIMS) or head.attack
    target = (
        f"a {head.arch or '?'} network trained on {f'{head.target_size:,}' if head.target_size else '?'} records "
        f"of {dataset_name(run.manifest.config)}" + (f" ({head.classes} classes)" if head.classes else "")
    )

    def value(name: str, digits: int = 3) -> str:
        r = rows.get(name)
        return fmt_num(r.value, digits) if r is not None else "not stored"

    items: list[tuple[Any, ...]] = [
        (
            "What was attacked: ",
            target,
            f", seed {seed}; train accuracy {value('target_train_accuracy')}, test accuracy "
            f"{value('target_test_accuracy')} (gap {value('generalization_gap')}).",
        ),
        (
            "Attack: ",
            Strong(what),
            ": ROC AUC ",
            Strong(value("auc")),
            "; TPR at 0.1% FPR ",
            Strong(value("tpr_at_fpr_0.001")),
            f"; attack accuracy {value('accuracy')}, precision {value('precision')}, recall {value('recall')}.",
        ),
    ]
    if "queries" in rows or "attack_time_s" in rows:
        queries = f"{int(rows['queries'].value):,}" if "queries" in rows else "not stored"
        time = fmt_seconds(rows["attack_time_s"].value) if "attack_time_s" in rows else "not stored"
        items.append((f"Cost: the target answered {queries} queries; fitting and scoring took {time}.",))
    items.append(
        (
            "One seed, so no interval: `miaudit compare --seeds N` and `miaudit reproduce` repeat settings over "
            "seeds and report 95% intervals.",
        )
    )
    items.append(_HOW_TO_READ)
    others = tuple(sorted(m for m in rows if m not in _SINGLE_METRICS and m not in _TARGET_METRICS))
    tables = [
        _metrics_table("Attack metrics", rows, (*_SINGLE_METRICS, *others)),
        _metrics_table("Target model", rows, _TARGET_METRICS),
    ]
    figs = C.score_figures(run.scores(head.setting_id), prefix="", what=what)
    sections = [
        Section("ROC and membership scores", "roc-and-membership-scores", tuple(figs)),
        Section("Numbers", "numbers", tuple(t for t in tables if t is not None)),
    ]
    if run.findings:
        sections.append(_findings_section(run))
    sections.append(
        Section("Appendix: run, versions and configuration", "appendix-run-versions-and-configuration",
                tuple(_run_facts(run)))
    )  # fmt: skip
    return Document(
        f"Membership inference audit: {what}",
        f"one `miaudit {run.kind}` run, {run.path.name}, seed {seed}",
        (Bullets(tuple(items)),),
        tuple(sections),
    )


def run_document(run: RunData) -> Document:
    """The report of a run directory: the single-attack view, or the full report of its studies."""
    if is_single_attack(run):
        return _single_attack_document(run)
    return _study_document(run)
