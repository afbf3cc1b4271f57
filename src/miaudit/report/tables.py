"""Tables from stored results: each study's table beside the paper's, findings, appendix facts.

Every function takes loaded records (:mod:`.load`) and returns a :class:`~.document.Table` of
formatted text, or plain numbers for the prose. Nothing is recomputed from models or scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from miaudit.report.document import Table
from miaudit.report.labels import (
    dim_header,
    dim_value,
    fmt_bracket,
    fmt_ci,
    fmt_num,
    fmt_seconds,
    metric_name,
    setting_label,
    sort_value,
)
from miaudit.report.records import SETTING_COLUMNS, Finding, SettingValue, SummaryRow

__all__ = [
    "APPENDIX_METRICS",
    "COMPARISON_METRICS",
    "attack_dims",
    "attack_table",
    "best_pair_table",
    "findings_table",
    "fixed_setting",
    "key_value_table",
    "layout",
    "paper_agreement",
    "pivot_table",
    "study_metrics_table",
    "varying_dims",
]

APPENDIX_METRICS = (
    "accuracy",
    "auc",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.001",
    "generalization_gap",
)
_PAIR_METRICS = ("accuracy", "precision", "recall", "auc", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001")
#: The attack-comparison table's metrics, each with the decimals it is shown with.
COMPARISON_METRICS = (
    ("auc", 3),
    ("tpr_at_fpr_0.01", 3),
    ("tpr_at_fpr_0.001", 3),
    ("tpr_at_fpr_0", 3),
    ("accuracy", 3),
    ("queries", 0),
    ("attack_time_s", 2),
)

Key = tuple[Any, ...]


def _follows_attack(rows: Sequence[SummaryRow], dim: str) -> bool:
    """Whether each attack among ``rows`` has a single value of ``dim`` (e.g. the Shokri classifier)."""
    seen: dict[str, SettingValue] = {}
    for r in rows:
        value = getattr(r, dim)
        if seen.setdefault(r.attack, value) != value:
            return False
    return True


def _raw_varying(rows: Sequence[SummaryRow]) -> list[str]:
    out = [d for d in SETTING_COLUMNS if len({getattr(r, d) for r in rows}) > 1]
    if "shadow_arch" in out and all(r.shadow_arch == r.arch for r in rows):
        out.remove("shadow_arch")
    return out


def varying_dims(rows: Iterable[SummaryRow]) -> list[str]:
    """The setting columns that take more than one value among ``rows``.

    ``shadow_arch`` is left out when it always equals ``arch`` (the attacker knows the network).
    When the attack varies, columns that merely follow it (the Shokri attack's classifier, say,
    empty for the other attacks) are left out too: they describe the attack, see :func:`attack_dims`.
    """
    rows = list(rows)
    out = _raw_varying(rows)
    if "attack" in out:
        out = [d for d in out if d == "attack" or not _follows_attack(rows, d)]
    return out


def attack_dims(rows: Iterable[SummaryRow]) -> list[str]:
    """The columns that vary among ``rows`` only because the attack does (one value per attack)."""
    rows = list(rows)
    out = _raw_varying(rows)
    if "attack" not in out:
        return []
    return [d for d in out if d != "attack" and _follows_attack(rows, d)]


def layout(rows: Iterable[SummaryRow]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Row and column dimensions of a study's pivot table, as the paper lays its tables out.

    The number of shadow models runs down the rows whenever it varies with something else (Tables
    1, 3 and 4); otherwise the first varying column makes the rows and the others the columns.
    """
    varying = varying_dims(rows)
    if "n_shadows" in varying and len(varying) > 1:
        return ("n_shadows",), tuple(d for d in varying if d != "n_shadows")
    if len(varying) <= 1:
        return tuple(varying), ()
    return (varying[0],), tuple(varying[1:])


def _key(row: SummaryRow, dims: Sequence[str]) -> Key:
    return tuple(getattr(row, d) for d in dims)


def _sorted_keys(keys: Iterable[Key], dims: Sequence[str]) -> list[Key]:
    return sorted(set(keys), key=lambda k: tuple(sort_value(d, v) for d, v in zip(dims, k, strict=True)))


def _col_label(dims: Sequence[str], key: Key) -> str:
    return setting_label(dict(zip(dims, key, strict=True)), dims=tuple(dims)) or "all"


def paper_agreement(rows: Iterable[SummaryRow]) -> tuple[int, int]:
    """``(inside, comparable)``: cells with a paper value and a 95% interval, and how many hold it."""
    inside = total = 0
    for r in rows:
        if r.paper is None or not r.interval.has_ci:
            continue
        total += 1
        inside += r.low <= r.paper <= r.high
    return inside, total


def pivot_table(
    rows: Iterable[SummaryRow], *, metric: str, title: str, caption: str = "", with_paper: bool = True
) -> Table | None:
    """One metric of a study laid out like the paper's table: ours (mean ± 95% CI) beside the paper's.

    Returns None when no row has ``metric``.
    """
    rows_m = [r for r in rows if r.metric == metric]
    if not rows_m:
        return None
    row_dims, col_dims = layout(rows_m)
    cells: dict[tuple[Key, Key], SummaryRow] = {}
    for r in rows_m:
        cells.setdefault((_key(r, row_dims), _key(r, col_dims)), r)
    rkeys = _sorted_keys((k[0] for k in cells), row_dims)
    ckeys = _sorted_keys((k[1] for k in cells), col_dims)
    has_paper = {
        c: with_paper and any(cells[(r, c)].paper is not None for r in rkeys if (r, c) in cells) for c in ckeys
    }
    columns: list[str] = [dim_header(d) for d in row_dims] or ["setting"]
    groups: list[tuple[str, int]] = [("", 1)] * len(columns)
    for c in ckeys:
        name = _col_label(col_dims, c) if col_dims else metric_name(metric)
        if has_paper[c]:
            columns += ["ours", "paper"]
            groups.append((name, 2))
        else:
            columns.append("ours" if any(has_paper.values()) else name)
            groups.append((name, 1))
    body = []
    for rk in rkeys:
        line = [dim_value(d, v) for d, v in zip(row_dims, rk, strict=True)] or ["all"]
        for c in ckeys:
            cell = cells.get((rk, c))
            line.append(fmt_ci(cell.interval) if cell else "–")
            if has_paper[c]:
                line.append(fmt_num(cell.paper, 4) if cell and cell.paper is not None else "–")
        body.append(tuple(line))
    return Table(
        title=title,
        columns=tuple(columns),
        rows=tuple(body),
        caption=caption,
        groups=tuple(groups) if any(has_paper.values()) else (),
    )


def _pick_pair(rows: Sequence[SummaryRow]) -> tuple[str | None, str | None]:
    """The paper's best pair (the setting with published precision) and ours (highest accuracy)."""
    acc = [r for r in rows if r.metric == "accuracy"]
    paper = next((r.setting_id for r in rows if r.metric == "precision" and r.paper is not None), None)
    if paper is None:
        paper = next((r.setting_id for r in acc if r.attack_model == "linear-svm" and r.n_shadows == 6), None)
    ours = max(acc, key=lambda r: r.mean).setting_id if acc else None
    return paper, ours


def best_pair_table(rows: Iterable[SummaryRow], *, title: str) -> Table | None:
    """The seed's Table 2: accuracy, precision and recall of the best pair, ours beside the paper's.

    The paper's best pair is the setting the paper published precision for (Linear SVM, 6 shadows);
    when our own best pair (highest mean accuracy) differs, it gets a column too.
    """
    rows = list(rows)
    paper_id, ours_id = _pick_pair(rows)
    index = {(r.setting_id, r.metric): r for r in rows}
    ids = [i for i in dict.fromkeys([paper_id, ours_id]) if i is not None]
    if not ids:
        return None
    published = any(r.setting_id == paper_id and r.paper is not None for r in rows)
    columns = ["metric"]
    for i in ids:
        who = {paper_id: "the paper's best pair", ours_id: "our best pair"}[i]
        if i == paper_id == ours_id:
            who = "the paper's best pair and ours"
        pair = setting_label(next(r for r in rows if r.setting_id == i).setting(), dims=("attack_model", "n_shadows"))
        columns.append(f"ours: {pair} ({who})")
        if i == paper_id and published:
            columns.append("paper")
    body = []
    for metric in _PAIR_METRICS:
        if not any((i, metric) in index for i in ids):
            continue
        line = [metric_name(metric)]
        for i in ids:
            cell = index.get((i, metric))
            line.append(fmt_ci(cell.interval) if cell else "–")
            if i == paper_id and published:
                line.append(fmt_num(cell.paper, 4) if cell and cell.paper is not None else "–")
        body.append(tuple(line))
    return Table(
        title=title,
        columns=tuple(columns),
        rows=tuple(body),
        caption="Mean ± half-width of the 95% interval over seeds; the paper reports one run.",
    )


def fixed_setting(rows: Iterable[SummaryRow]) -> dict[str, Any]:
    """The setting columns that keep one value among ``rows``, e.g. ``{"attack_model": "linear-svm", ...}``."""
    rows = list(rows)
    varying = set(varying_dims(rows))
    out = {}
    for d in SETTING_COLUMNS:
        values = {getattr(r, d) for r in rows}
        if d not in varying and len(values) == 1 and None not in values:
            out[d] = values.pop()
    return out


def study_metrics_table(
    rows: Iterable[SummaryRow], *, title: str, labels: Mapping[str, str] | None = None
) -> Table | None:
    """Every setting of a study with its main metrics (mean ± 95% CI), for the appendix.

    ``labels`` maps setting ids to their arms' names (``settings.json``); when any of the study's
    settings has one, a first column shows it (the setting id where a setting has none).
    """
    rows = list(rows)
    if not rows:
        return None
    names = {r.setting_id: (labels or {}).get(r.setting_id) for r in rows}
    named = any(names.values())
    dims = varying_dims(rows) or ([] if named else ["attack_model"])
    index = {(r.setting_id, r.metric): r for r in rows}
    settings: dict[str, SummaryRow] = {}
    for r in rows:
        settings.setdefault(r.setting_id, r)
    metrics = [m for m in APPENDIX_METRICS if any(r.metric == m for r in rows)]
    order = sorted(settings.values(), key=lambda r: tuple(sort_value(d, getattr(r, d)) for d in dims))
    body = []
    for s in order:
        line = [names[s.setting_id] or s.setting_id] if named else []
        line += [dim_value(d, getattr(s, d)) for d in dims]
        for m in metrics:
            cell = index.get((s.setting_id, m))
            line.append(fmt_ci(cell.interval) if cell else "–")
        body.append(tuple(line))
    fixed = setting_label(fixed_setting(rows))
    return Table(
        title=title,
        columns=(*(("setting",) if named else ()), *(dim_header(d) for d in dims), *(metric_name(m) for m in metrics)),
        rows=tuple(body),
        align=("l",) * (len(dims) + named) + ("r",) * len(metrics),
        caption=f"Held fixed: {fixed}." if fixed else "",
    )


def _diff_text(diff: float, low: float, high: float) -> str:
    if not math.isfinite(diff):
        return "–"
    if math.isfinite(low) and math.isfinite(high):
        return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"{diff:+.3f}"


FINDINGS_CAPTION = (
    "The difference is in attack accuracy (the paper's metric); the margin is the smallest difference that "
    "matters. supported: the 95% interval lies beyond the margin on the claimed side (for a claim that two "
    "settings are comparable: inside the margin); contradicted: beyond the margin on the other side; "
    "negligible: the whole interval lies inside the margin; inconclusive: anything else, or too few seeds for an "
    "interval. Seeds needed: about how many seeds a decisive verdict would take at the observed spread."
)


def findings_table(findings: Sequence[Finding], *, title: str = "The paper's findings, tested") -> Table:
    """Each finding: its claim, the comparison made, the difference with its 95% interval, margin, verdict.

    ``seeds needed`` is the number of seeds the run estimated a decisive verdict needs. When the run
    also judged the findings on AUC, a last column gives that verdict.
    """
    with_auc = any(f.auc_verdict for f in findings)
    body = tuple(
        (
            f.id,
            f.claim,
            f.paper_ref or "–",
            f.comparison or f.metric or "–",
            _diff_text(f.difference, f.low, f.high),
            f"±{f.margin:.3f}" if math.isfinite(f.margin) else "–",
            fmt_num(f.p_value, 3) if math.isfinite(f.p_value) else "–",
            str(f.n) if f.n else "–",
            f"{f.seeds_needed:,}" if f.seeds_needed is not None else "–",
            f.verdict,
            *((f.auc_verdict or "–",) if with_auc else ()),
        )
        for f in findings
    )
    columns = ("id", "claim", "paper", "comparison", "difference [95% CI]", "margin", "p", "seeds", "seeds needed")
    return Table(
        title=title,
        columns=(*columns, "verdict", *(("verdict on AUC",) if with_auc else ())),
        rows=body,
        align=("l", "l", "l", "l", "r", "r", "r", "r", "r", "l", *(("l",) if with_auc else ())),
        badge_columns=(9, 10) if with_auc else (9,),
        caption=FINDINGS_CAPTION,
    )


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def key_value_table(title: str, mapping: Mapping[str, Any], *, seconds: Callable[[str], bool] | None = None) -> Table:
    """A two-column table of a flat mapping (versions, hardware, timings).

    Values whose key satisfies ``seconds(key)`` are durations in seconds, shown as such (and the
    key loses its ``_s``); other keys lose their underscores.
    """
    rows = []
    for k, v in mapping.items():
        key = str(k)
        if seconds is not None and seconds(key):
            rows.append((key.removesuffix("_s").replace("_", " "), fmt_seconds(v)))
        else:
            rows.append((key.replace("_", " "), _plain(v)))
    return Table(title=title, columns=("item", "value"), rows=tuple(rows), align=("l", "l"))


def attack_table(rows: Iterable[SummaryRow], *, title: str) -> Table | None:
    """The attacks of a study side by side: one row per attack (per setting when more than the attack varies).

    Each cell is ``mean [low, high]`` over seeds, or the mean alone when there is no interval. A
    ``configuration`` column describes what follows the attack (the Shokri classifier, the number
    of shadow or reference models); the columns that vary within an attack come before the metrics.
    Returns None when the study has fewer than two attacks.
    """
    rows = list(rows)
    if len({r.attack for r in rows}) < 2:
        return None
    within = [d for d in varying_dims(rows) if d != "attack"]
    config = attack_dims(rows)
    index = {(r.setting_id, r.metric): r for r in rows}
    settings: dict[str, SummaryRow] = {}
    for r in rows:
        settings.setdefault(r.setting_id, r)
    metrics = [(m, d) for m, d in COMPARISON_METRICS if m == "auc" or any(r.metric == m for r in rows)]

    def order(s: SummaryRow) -> tuple[Any, ...]:
        auc = index.get((s.setting_id, "auc"))
        mean = auc.mean if auc is not None and math.isfinite(auc.mean) else -math.inf
        return (*(sort_value(d, getattr(s, d)) for d in within), -mean, s.attack)

    body = []
    for s in sorted(settings.values(), key=order):
        line = [s.attack]
        if config:
            line.append(setting_label(s.setting(), dims=tuple(config)) or "–")
        line += [dim_value(d, getattr(s, d)) for d in within]
        for m, digits in metrics:
            cell = index.get((s.setting_id, m))
            line.append(fmt_bracket(cell.interval, digits) if cell else "–")
        n = max((r.n for (sid, _), r in index.items() if sid == s.setting_id), default=0)
        body.append((*line, str(n)))
    columns = ("attack", *(("configuration",) if config else ()), *(dim_header(d) for d in within))
    return Table(
        title=title,
        columns=(*columns, *(metric_name(m) for m, _ in metrics), "seeds"),
        rows=tuple(body),
        align=("l",) * len(columns) + ("r",) * (len(metrics) + 1),
        caption="Mean over seeds [95% interval]; the mean alone where there is no interval (fewer than 3 seeds). "
        + ("Sorted by AUC." if not within else "Sorted by " + ", ".join(map(dim_header, within)) + ", then by AUC."),
    )
