"""One study's section of a report: its question, figure and tables, and the attacks side by side.

Part of the composer (:mod:`.run_report`): a study that varies something other than the attack gets
the tables laid out like the seed paper's (ours beside the paper's values) and a figure; a study
whose rows hold more than one attack also gets an attack comparison (a table with one row per
attack and a log-log ROC figure with one curve per attack, pooled over seeds). A study that varies
the attack and nothing else gets the comparison alone: the per-attack tables would repeat it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miaudit.report import curves as C
from miaudit.report import figures as F
from miaudit.report.document import Block, Bullets, FigureBlock, Paragraph, Section, Strong, slug
from miaudit.report.labels import STUDY_TITLES, dim_header, dim_value, setting_label, sort_value
from miaudit.report.load import RunData
from miaudit.report.records import SettingValue, StudyInfo, SummaryRow
from miaudit.report.tables import (
    attack_table,
    best_pair_table,
    fixed_setting,
    paper_agreement,
    pivot_table,
    varying_dims,
)

__all__ = ["MAX_ROC_CURVES", "STUDY_QUESTIONS", "dataset_name", "study_section", "study_title"]

#: What each of the seed paper's studies asks, in one sentence (otherwise: the manifest's description).
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
#: Beyond this many settings, the comparison's ROC figure shows each attack's best setting only.
MAX_ROC_CURVES = 8
_PREFERRED_X = {"3": "target_size"}
_CAPTION_SPREAD = "mean over seeds with 95% intervals (error bars)"
_DATASETS = {"fashion-mnist": "Fashion-MNIST", "digits": "scikit-learn digits"}


def _find_key(obj: Any, key: str) -> Any:
    """The first text stored under ``key`` anywhere in nested dicts and lists (depth first)."""
    if isinstance(obj, dict):
        if isinstance(obj.get(key), str):
            return obj[key]
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def dataset_name(config: Mapping[str, Any]) -> str:
    """The dataset a run's configuration names (searched at any depth), as readers know it; default Fashion-MNIST."""
    name = _find_key(dict(config), "dataset")
    return _DATASETS.get(str(name), str(name)) if name else "Fashion-MNIST"


def study_title(run: RunData, study: str) -> str:
    """``"Study 1: <title>"`` for the paper's numbered studies, the title alone for the others."""
    info = run.manifest.study(study)
    title = info.title if info is not None else STUDY_TITLES.get(study, f"Study {study}")
    return f"Study {study}: {title}" if study.isdigit() else title


def _stem(study: str) -> str:
    return f"study{study}" if study.isdigit() else slug(study).replace("-", "_")


def _study_figure(study: str, rows: list[SummaryRow], title: str, short: str, ref: str) -> FigureBlock | None:
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

    def label_of(dim: str | None) -> Any:
        return lambda v: setting_label({dim: v}, dims=(dim,)) if dim else "ours"

    def sort(dim: str, v: SettingValue) -> Any:
        return sort_value(dim, v)

    if x is None or (study == "1" and group == "attack_model"):
        x_dim = x or varying[0]
        group_dim = group if x else (varying[1] if len(varying) > 1 else None)
        series = F.metric_series(rows, metric=metric, x=x_dim, group_by=group_dim, sort=sort, label=label_of(group_dim))
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
        series = F.metric_series(rows, metric=metric, x=x, group_by=group, label=label_of(group), sort=sort)
        fig = F.plot_lines(
            series,
            title=full_title,
            xlabel=f"{dim_header(x)}" + (" (log scale)" if x == "target_size" else ""),
            ylabel="attack accuracy",
            chance=0.5,
            log_x=x == "target_size",
        )
        caption = f"Attack accuracy, {_CAPTION_SPREAD}; dotted line: chance (0.5).{paper_note}"
    name = f"{_stem(study)}_{slug(short).replace('-', '_')[:40]}"
    return F.figure_block(name, fig, title=full_title, caption=caption)


def _paper_tables(study: str, rows: list[SummaryRow], title: str, info: StudyInfo) -> list[Block]:
    """The study's figure and tables as the paper lays them out, and how often the paper falls in our interval."""
    ref = info.paper_ref
    blocks: list[Block] = []
    fig = _study_figure(study, rows, title, info.title, ref)
    if fig is not None:
        blocks.append(fig)
    paper = any(r.paper is not None for r in rows if r.metric == "accuracy")
    beside = f", ours beside the paper's ({ref or 'published values'})" if paper else ""
    table = pivot_table(
        rows,
        metric="accuracy",
        title=f"{title}: attack accuracy{beside}",
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
    return blocks


def _roc_settings(rows: list[SummaryRow]) -> tuple[list[SummaryRow], bool]:
    """One row per setting to draw (the AUC row where there is one), and whether some were left out."""
    by_setting: dict[str, SummaryRow] = {}
    for r in rows:
        if r.metric == "auc" or r.setting_id not in by_setting:
            by_setting[r.setting_id] = r
    chosen = list(by_setting.values())
    if len(chosen) <= MAX_ROC_CURVES:
        return chosen, False
    best: dict[str, SummaryRow] = {}
    for r in chosen:
        if r.metric == "auc" and (r.attack not in best or r.mean > best[r.attack].mean):
            best[r.attack] = r
    return list(best.values()), True


def comparison_section(run: RunData, study: str, rows: list[SummaryRow], title: str) -> Section | None:
    """The attacks of a study side by side (table and pooled log-log ROC); None when one attack ran."""
    table = attack_table(rows, title=f"{title}: the attacks side by side")
    if table is None:
        return None
    within = [d for d in varying_dims(rows) if d != "attack"]
    chosen, trimmed = _roc_settings(rows)
    curves = [
        C.pooled_roc(run.scores(r.setting_id), label=setting_label(r.setting(), dims=("attack", *within)))
        for r in chosen
    ]
    curves.sort(key=lambda c: -c.auc)
    seeds = max(c.n_seeds for c in curves)
    fig = F.figure_block(
        f"{_stem(study)}_attacks_roc_loglog",
        C.plot_pooled_roc(curves, title=f"{title}: ROC of every attack"),
        title=f"{title}: ROC of every attack, log-log axes",
        caption=f"One curve per {'attack' if not within else 'setting'}, from the stored scores of all {seeds} "
        f"seed{'s' if seeds != 1 else ''} pooled (so its AUC can differ slightly from the mean over seeds in the "
        "table); dashed: chance; dotted: FPR 1% and 0.1%. Log-log axes show the low false-positive region, where a "
        "membership claim is believable."
        + (" Only each attack's setting with the highest mean AUC is drawn." if trimmed else ""),
    )
    n = len({r.attack for r in rows})
    return Section(
        f"{title}: attacks compared",
        slug(f"{title}: attacks compared"),
        (
            Paragraph.of(
                f"{n} attacks on the same targets"
                + (f", for each {', '.join(map(dim_header, within))}" if within else "")
                + ": how well each separates members from non-members, at what cost in queries and time."
            ),
            table,
            fig,
        ),
    )


def study_section(run: RunData, study: str, rows: list[SummaryRow]) -> Section:
    """The section of one study: question, settings, figure, tables, attack comparison, verdicts."""
    info = run.study_info(study)
    title = study_title(run, study)
    fixed = setting_label(fixed_setting(rows))
    seeds = max((r.n for r in rows), default=0)
    blocks: list[Block] = [
        Paragraph.of(STUDY_QUESTIONS.get(study) or info.description or info.title),
        Paragraph.of(
            f"{len({r.setting_id for r in rows})} settings, {seeds} seed{'s' if seeds != 1 else ''} each"
            + (f"; held fixed: {fixed}." if fixed else ".")
        ),
    ]
    if varying_dims(rows) != ["attack"]:
        blocks += _paper_tables(study, rows, title, info)
    found = [f for f in run.findings if f.study == study]
    if found:
        blocks.append(Bullets(tuple((f"{f.id}: ", Strong(f.verdict), f" — {f.sentence or f.claim}") for f in found)))
    comparison = comparison_section(run, study, rows, title)
    return Section(title, slug(title), tuple(blocks), (comparison,) if comparison is not None else ())
