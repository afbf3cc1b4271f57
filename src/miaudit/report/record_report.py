"""Short reports of single records: ``miaudit attack --json`` and ``miaudit compare --json``."""

from __future__ import annotations

import json
from typing import Any

from miaudit.report import curves as C
from miaudit.report import figures as F
from miaudit.report.document import Block, Bullets, Document, Paragraph, Preformatted, Section, Strong, Table
from miaudit.report.labels import ATTACK_MODEL_NAMES, fmt_interval_text, fmt_num, metric_name
from miaudit.report.records import AttackRecord, CompareData, ScoreSet
from miaudit.report.tables import compare_table, key_value_table

__all__ = ["attack_document", "compare_document", "compare_section", "dataset_name"]

_DATASETS = {"fashion-mnist": "Fashion-MNIST", "digits": "scikit-learn digits"}


def _find_key(obj: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in nested dicts and lists (depth first)."""
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


def dataset_name(config: Any) -> str:
    """The dataset a config names (searched at any depth), as readers know it; default Fashion-MNIST."""
    name = _find_key(config, "dataset")
    return _DATASETS.get(str(name), str(name)) if name else "Fashion-MNIST"


def compare_section(compare: CompareData) -> Section:
    """A section with the attacks' table and every attack's ROC on log-log axes."""
    bands = [C.roc_band(compare.scores[name]) for name in compare.metrics if name in compare.scores]
    target = compare.target
    on_target = ""
    if "train_accuracy" in target and "test_accuracy" in target:
        on_target = (
            f" The target's train accuracy is {fmt_interval_text(target['train_accuracy'])}, its test accuracy "
            f"{fmt_interval_text(target['test_accuracy'])}."
        )
    blocks: list[Block] = [
        Paragraph.of(
            f"{len(compare.metrics)} attacks on the same targets ({len(compare.seeds) or 'unrecorded'} seeds), "
            f"from {compare.path.name} (written by `miaudit compare --json`).{on_target}"
        ),
        compare_table(compare),
    ]
    missing = [name for name in compare.metrics if name not in compare.scores]
    if bands:
        bands.sort(key=lambda b: -b.auc.mean)
        blocks.append(
            F.figure_block(
                "compare_roc_loglog",
                C.plot_roc(bands, log=True, title="ROC of every attack, log-log"),
                title="ROC of every attack, log-log axes",
                caption="Mean TPR at each FPR over seeds with its 95% band, one colour per attack; dashed: chance. "
                "Log-log axes show the low false-positive region, where a membership claim is believable."
                + (f" No stored scores for: {', '.join(missing)}." if missing else ""),
            )
        )
    return Section("Attacks compared", "attacks-compared", tuple(blocks))


def compare_document(compare: CompareData) -> Document:
    """The report of a ``compare.json`` on its own."""
    best = max(compare.metrics, key=lambda a: compare.metrics[a]["auc"].mean)
    rec = compare.metrics[best]
    tpr = rec.get("tpr_at_fpr_0.001")
    summary: list[Block] = [
        Bullets(
            (
                ("Attacks compared: ", ", ".join(compare.metrics), f" on {dataset_name(compare.config)}."),
                (
                    "Strongest attack (highest mean AUC): ",
                    Strong(best),
                    ": ROC AUC ",
                    Strong(fmt_interval_text(rec["auc"])),
                    "; TPR at 0.1% FPR ",
                    Strong(fmt_interval_text(tpr) if tpr else "not recorded"),
                    ".",
                ),
                (
                    "AUC 0.5 is chance; the TPR at 0.1% FPR is the fraction of members named while "
                    "wrongly accusing 1 in 1,000 non-members.",
                ),
            )
        )
    ]
    appendix = Section(
        "Appendix: configuration",
        "appendix-configuration",
        (
            Paragraph.of("Seeds: " + (", ".join(map(str, compare.seeds)) or "not recorded") + "."),
            Preformatted(json.dumps(compare.config, indent=2, sort_keys=True, default=str)),
        ),
    )
    return Document(
        "Membership inference audit: attacks compared",
        f"from {compare.path.name}",
        tuple(summary),
        (compare_section(compare), appendix),
    )


def _metric_rows(metrics: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    rows = []
    for key in ("accuracy", "precision", "recall", "balanced_accuracy", "advantage", "auc"):
        if isinstance(metrics.get(key), int | float):
            rows.append((metric_name(key), fmt_num(float(metrics[key]), 4)))
    for level, value in (metrics.get("tpr_at_fpr") or {}).items():
        if isinstance(value, int | float):
            rows.append((metric_name(f"tpr_at_fpr_{level}"), fmt_num(float(value), 4)))
    for key in ("n_members", "n_nonmembers"):
        if key in metrics:
            rows.append((metric_name(key), f"{metrics[key]:,}" if isinstance(metrics[key], int) else str(metrics[key])))
    return tuple(rows)


def attack_document(record: AttackRecord) -> Document:
    """The short report of one ``miaudit attack --json`` record: what was attacked, ROC, histogram."""
    cfg, tgt, m = record.config, record.target, record.metrics
    name = str(cfg.get("attack") or (record.extra.get("attack") or {}).get("name") or "shokri")
    if name == "shokri":
        model = ATTACK_MODEL_NAMES.get(str(cfg.get("attack_model")), str(cfg.get("attack_model", "?")))
        short = f"{model}, {cfg.get('shadows', '?')} shadows"
        what = f"shokri attack, {short}"
    else:
        short = what = f"{name} attack"
    target = (
        f"a {cfg.get('arch', '?')} network trained on {tgt.get('n_train', cfg.get('target_size', '?'))} records of "
        f"{dataset_name(cfg)}" + (f" ({cfg['classes']} classes)" if cfg.get("classes") else "")
    )
    tpr = (m.get("tpr_at_fpr") or {}).get("0.001")
    gap = tgt.get("generalization_gap")
    if gap is None and isinstance(tgt.get("train_accuracy"), float) and isinstance(tgt.get("test_accuracy"), float):
        gap = tgt["train_accuracy"] - tgt["test_accuracy"]
    summary: list[Block] = [
        Bullets(
            (
                (
                    "What was attacked: ",
                    target,
                    f", seed {cfg.get('seed', '?')}; train accuracy "
                    f"{fmt_num(tgt.get('train_accuracy'))}, test accuracy {fmt_num(tgt.get('test_accuracy'))} "
                    f"(gap {fmt_num(gap)}).",
                ),
                (
                    "Attack: ",
                    Strong(what),
                    ": ROC AUC ",
                    Strong(fmt_num(m.get("auc"))),
                    "; TPR at 0.1% FPR ",
                    Strong(fmt_num(tpr)),
                    f"; attack accuracy {fmt_num(m.get('accuracy'))}, precision "
                    f"{fmt_num(m.get('precision'))}, recall {fmt_num(m.get('recall'))}.",
                ),
                (
                    "One seed, so no interval: `miaudit reproduce` repeats settings over seeds and "
                    "reports 95% intervals.",
                ),
            )
        )
    ]
    scores = ScoreSet(label=short, by_seed=record.scores.by_seed)
    figs = C.score_figures(scores, prefix="", what=what)
    tables = Section(
        "Numbers",
        "numbers",
        (
            Table("Attack metrics", ("metric", "value"), _metric_rows(m)),
            key_value_table("Target model", {k: v for k, v in tgt.items() if not isinstance(v, dict | list)}),
        ),
    )
    appendix: list[Block] = [Preformatted(json.dumps(cfg, indent=2, sort_keys=True, default=str))]
    if record.timings:
        appendix.append(key_value_table("Timings", record.timings, seconds=lambda _k: True))
    if record.versions:
        appendix.append(key_value_table("Versions", record.versions))
    return Document(
        f"Membership inference audit: {what}",
        f"one `miaudit attack` run, {record.path.name}",
        tuple(summary),
        (
            Section("ROC and membership scores", "roc-and-membership-scores", tuple(figs)),
            tables,
            Section(
                "Appendix: configuration, timings, versions", "appendix-configuration-timings-versions", tuple(appendix)
            ),
        ),
    )
