"""The audit report: what ``miaudit audit`` found, in plain language first, from the audit directory alone.

The composer of an audit directory (read by :mod:`.audit_load`): the verdict and what it means, the
target and its accuracy on members and non-members, every attack with its intervals, ROC curves from
the stored per-record scores, who is exposed (slices by class and by correct prediction), the most
exposed records (pictures for image data, rows for tables), and the data and configuration. Nothing is
retrained or rescored; the ROC curves are recomputed from the stored scores with :mod:`miaudit.metrics`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from miaudit.report import curves as C
from miaudit.report import figures as F
from miaudit.report.audit_load import AttackResult, AuditData, AuditRecords, DataInfo, SliceRow, TargetInfo
from miaudit.report.document import (
    Block,
    Bullets,
    Document,
    FigureBlock,
    Paragraph,
    Preformatted,
    Section,
    Strong,
    Table,
)
from miaudit.report.labels import fmt_bracket, fmt_num, fmt_seconds
from miaudit.report.records import ScoreSet
from miaudit.report.tables import key_value_table

__all__ = ["DEFENCES", "MAX_EXPOSED_IMAGES", "MAX_EXPOSED_ROWS", "accuracy_warning", "audit_document"]

#: What each deliberate output defence (``target.answers``) weakens.
DEFENCES = {
    "top_k": "the target returns only its k highest probabilities. Attacks that read the whole probability vector "
    "(shokri, ml-leaks, entropy, modified-entropy) lose the rest of it, and those that need the true class's "
    "probability (loss, confidence, lira, lira-offline, rmia) lose it whenever that class is outside the top k.",
    "rounded": "the target rounds its probabilities. Attacks that rely on small differences in confidence near 1 "
    "(lira, lira-offline, rmia, loss) are weakened most: rounding ties many records at the same score, which "
    "flattens the low false-positive end of the ROC.",
    "labels": "the target returns only its predicted label. Every score-based attack (shokri, the threshold attacks, "
    "ml-leaks, lira, lira-offline, rmia) then sees no more than whether the prediction is right; only a "
    "label-only attack can read more.",
}
MAX_EXPOSED_IMAGES = 16
MAX_EXPOSED_ROWS = 10
_FEATURES_SHOWN = 6
_LOWER_BOUND = (
    "An audit measures a lower bound on leakage: a stronger attacker, more queries or more reference models may "
    "find more, so 'no leak measurable' is not a proof of privacy."
)
_HOW_TO_READ = (
    "How to read: AUC 0.5 is chance and 1 a perfect attack; TPR at 0.1% FPR is the fraction of members named "
    "while wrongly accusing only 1 in 1,000 non-members (chance: 0.001). Brackets: 95% bootstrap intervals over "
    "the evaluated records."
)


def _count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{100 * v:.1f}%"


# ----------------------------------------------------------------------------------- verdict
def _verdict(audit: AuditData) -> list[Block]:
    blocks: list[Block] = []
    if not audit.complete:
        state = "is still running" if audit.status == "running" else "was interrupted"
        blocks.append(
            Paragraph.of(
                Strong(f"Warning: this audit {state} (status '{audit.status}')"),
                (f": {audit.error}" if audit.error else "")
                + ". This report shows only the attacks that finished"
                + (
                    f"; rerun `{audit.command}` to complete it." if audit.command else "; rerun the audit to finish it."
                ),
            )
        )
    v = audit.verdict
    if v is None:
        blocks.append(Paragraph.of(Strong("No verdict yet: the audit did not finish.")))
        return blocks
    blocks.append(Paragraph.of("Verdict: ", Strong(v.text)))
    a = next((x for x in audit.attacks if x.name == v.attack), None)
    if v.leaks and v.text.startswith("leaks on average"):
        meaning = (
            f"What it means: the attack {v.attack or ''} scores members higher than non-members more often than "
            "chance would (its AUC's interval lies above 0.5), but at 0.1% FPR it names no more members than an "
            "attack without signal would: the model leaks on average, without exposing a single record with "
            "confidence. "
        )
    elif v.leaks:
        found = (
            f" At 0.1% FPR it names {_count(a.flagged_at_01)} of {_count(a.n_members)} members, where a coin "
            f"accusing as many non-members would name about {0.001 * a.n_members:.1f}."
            if a is not None and a.flagged_at_01 is not None
            else ""
        )
        meaning = (
            f"What it means: the attack {v.attack or ''} tells members of the training set from other records better "
            f"than chance, even when it may wrongly accuse only 1 non-member in 1,000.{found} "
        )
    else:
        meaning = (
            "What it means: no attack here named more members at 0.1% FPR than a coin with the same false-positive "
            "rate would, beyond the interval's margin. "
        )
    blocks.append(Paragraph.of(meaning + _LOWER_BOUND))
    if audit.privacy.get("text"):
        blocks.append(Paragraph.of("Privacy claim: ", Strong(str(audit.privacy["text"])), "."))
    return blocks


# ------------------------------------------------------------------------------------ target
def accuracy_warning(target: TargetInfo, n_classes: int | None) -> str:
    """A warning when the target's accuracies suggest it is fed data it does not expect; "" otherwise.

    It warns when the member accuracy is more than 0.1 below the non-member accuracy (training makes
    it higher), or when both are within a tenth of the way from chance (1 / n_classes) to 1.

    >>> accuracy_warning(TargetInfo("m", "", "", "", "", 0.1, 0.1, 0.0), 10)[:30]
    'Both accuracies are near chanc'
    >>> accuracy_warning(TargetInfo("m", "", "", "", "", 1.0, 0.9, 0.1), 10)
    ''
    """
    m, n = target.member_accuracy, target.nonmember_accuracy
    if not (math.isfinite(m) and math.isfinite(n)):
        return ""
    fix = (
        "Check that the data is preprocessed as the model expects (a scaling mismatch shows here); until then "
        "the attacks' numbers say little about this model."
    )
    if n_classes is not None and n_classes >= 2:
        chance = 1.0 / n_classes
        if max(m, n) <= chance + 0.1 * (1.0 - chance):
            return (
                f"Both accuracies are near chance ({m:.3f} on members, {n:.3f} on non-members; a guess among "
                f"{n_classes} classes gets {chance:.3f}): the model barely predicts these records. {fix}"
            )
    if m < n - 0.1:
        return (
            f"The model is less accurate on its own training members ({m:.3f}) than on non-members ({n:.3f}), the "
            f"opposite of what training does. {fix}"
        )
    return ""


def _target_section(audit: AuditData) -> Section:
    t, d = audit.target, audit.data
    gap = t.generalization_gap if math.isfinite(t.generalization_gap) else t.member_accuracy - t.nonmember_accuracy
    facts = {
        "source": t.source or "–",
        "family": t.family or "–",
        "description": t.description or "–",
        "output kind": t.output_kind or "–",
        "answers": t.answers,
        "accuracy on members": fmt_num(t.member_accuracy),
        "accuracy on non-members": fmt_num(t.nonmember_accuracy),
        "gap (members − non-members)": fmt_num(gap),
    }
    for key, value in audit.shadows.items():
        facts[f"shadow/reference models: {key}"] = str(value)
    blocks: list[Block] = [
        Paragraph.of(
            f"The audited model is {t.description or 'a model'} ({t.family or 'unknown family'}) from {t.source or '?'}"
            f", answering {t.answers}. It is right on {fmt_num(t.member_accuracy)} of its {d.n_members:,} members and "
            f"on {fmt_num(t.nonmember_accuracy)} of the {d.n_nonmembers:,} non-members (gap {fmt_num(gap)}); a "
            "large gap is overfitting, which the attacks exploit."
        ),
        key_value_table("The target", facts),
    ]
    if t.answers in DEFENCES:
        blocks.append(Paragraph.of(Strong("A deliberate output defence: "), DEFENCES[t.answers]))
    warning = accuracy_warning(t, d.n_classes or len(d.classes) or None)
    if warning:
        blocks.append(Paragraph.of(Strong("Warning: "), warning))
    return Section("The target", "the-target", tuple(blocks))


# ----------------------------------------------------------------------------------- attacks
def _ordered(audit: AuditData) -> list[AttackResult]:
    return sorted(audit.attacks, key=lambda a: a.strength, reverse=True)


def attacks_table(audit: AuditData) -> Table:
    """One row per attack, strongest first: AUC, TPR at 1% and 0.1% FPR with intervals, members flagged, cost."""
    rows = []
    for a in _ordered(audit):
        rows.append(
            (
                a.name,
                fmt_bracket(a.auc),
                fmt_bracket(a.tpr_at_1),
                fmt_bracket(a.tpr_at_01),
                f"{_count(a.flagged_at_1)} of {a.n_members:,}",
                f"{_count(a.flagged_at_01)} of {a.n_members:,}",
                _count(a.queries),
                fmt_seconds(a.time_s) if math.isfinite(a.time_s) else "–",
            )
        )
    return Table(
        "The attacks, strongest first",
        ("attack", "ROC AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "members flagged at 1% FPR",
         "members flagged at 0.1% FPR", "queries", "time"),
        tuple(rows),
        caption="Strongest: highest TPR at 0.1% FPR, then AUC. Brackets: 95% stratified bootstrap intervals over the "
        "evaluated records. Members flagged: members whose score passes the threshold that flags 1% (0.1%) of "
        "non-members. Time: fitting and scoring.",
    )  # fmt: skip


def _scores(records: AuditRecords, name: str) -> ScoreSet | None:
    mine = records.of_attack(name)
    if mine.member.all() or not mine.member.any():
        return None
    return ScoreSet(name, {"audit": (mine.score[mine.member], mine.score[~mine.member])})


def _roc_figures(audit: AuditData) -> list[FigureBlock]:
    if audit.records is None:
        return []
    bands = []
    for a in _ordered(audit):
        scores = _scores(audit.records, a.name)
        if scores is not None:
            bands.append(C.roc_band(scores))
    if not bands:
        return []
    n0 = max(round(1 / b.min_fpr) for b in bands)
    common = (
        f"One curve per attack, from the stored score of every evaluated record ({audit.records.source}); "
        "dashed: chance."
    )
    return [
        F.figure_block(
            "audit_roc_loglog",
            C.plot_roc(bands, log=True, title="ROC of every attack, log-log axes", per_seed=False),
            title="ROC curves of every attack, log-log axes",
            caption=f"{common} Log-log axes show the low false-positive region where a membership claim is "
            f"believable (dotted: FPR 1% and 0.1%); the lowest FPR shown is 1/{n0:,}, one non-member.",
            half=True,
        ),
        F.figure_block(
            "audit_roc_linear",
            C.plot_roc(bands, log=False, title="ROC of every attack", per_seed=False),
            title="ROC curves of every attack, linear axes",
            caption=f"{common} The area under each curve is its AUC.",
            half=True,
        ),
    ]


def _attacks_section(audit: AuditData) -> Section:
    blocks: list[Block] = [
        Paragraph.of(
            f"{len(audit.attacks)} attack{'s' if len(audit.attacks) != 1 else ''} queried the target as a black box "
            f"and scored each of the {audit.data.n_members:,} members and {audit.data.n_nonmembers:,} non-members."
        ),
        attacks_table(audit),
    ]
    n0 = min(a.n_nonmembers for a in audit.attacks)
    if 0 < n0 < 1000:
        blocks.append(
            Paragraph.of(
                f"With {n0:,} non-members the lowest false-positive rate that can be measured is 1/{n0:,} "
                f"({_pct(1 / n0)}): the TPR at 0.1% FPR is the TPR with no false positive at all. More non-members "
                "give a finer reading of the low-FPR end."
            )
        )
    said = [(f"{a.name}: ", a.verdict) for a in _ordered(audit) if a.verdict]
    if said:
        blocks.append(Bullets(tuple(said)))
    figures = _roc_figures(audit)
    blocks += figures if figures else [Paragraph.of("No per-record scores were stored, so no ROC curve is drawn.")]
    return Section("The attacks", "the-attacks", tuple(blocks))


# ------------------------------------------------------------------------------------ slices
def _computed_slices(records: AuditRecords) -> tuple[SliceRow, ...]:
    """Slices from the stored records when audit.json has none (an incomplete audit)."""
    from miaudit.metrics import auc, tpr_at_fpr

    out = []
    groups = [("class", str(k), records.label == k) for k in dict.fromkeys(records.label.tolist())]
    groups += [("prediction", k, records.correct == (k == "correct")) for k in ("correct", "wrong")]
    for kind, key, keep in groups:
        y, s = records.member[keep], records.score[keep]
        both = y.any() and not y.all()
        value = (float(auc(y, s)), float(tpr_at_fpr(y, s, 0.01))) if both else (math.nan, math.nan)  # type: ignore[arg-type]
        out.append(SliceRow(kind, key, int(y.sum()), int((~y).sum()), *value))
    return tuple(out)


def _slice_table(rows: Sequence[SliceRow], *, title: str, head: str) -> Table:
    return Table(
        title,
        (head, "records", "members", "non-members", "ROC AUC", "TPR at 1% FPR"),
        tuple((r.key, f"{r.n:,}", f"{r.n_members:,}", f"{r.n_nonmembers:,}", fmt_num(r.auc), fmt_num(r.tpr_at_1))
              for r in rows),
        caption="Within each slice, members against the non-members of the same slice; –: the slice lacks members or "
        "non-members. Small slices give noisy numbers: at 1% FPR a slice needs 100 non-members for one false positive.",
    )  # fmt: skip


def _class_order(data: DataInfo) -> dict[str, int]:
    return {c: i for i, c in enumerate(data.classes)}


def _slices_section(audit: AuditData, a: AttackResult) -> Section:
    slices = a.slices or (_computed_slices(audit.records.of_attack(a.name)) if audit.records is not None else ())
    order = _class_order(audit.data)
    by_class = sorted((s for s in slices if s.kind == "class"), key=lambda s: (order.get(s.key, len(order)), s.key))
    by_pred = [s for s in slices if s.kind == "prediction"]
    blocks: list[Block] = [
        Paragraph.of(
            f"Who is exposed to {a.name}, the strongest attack (highest TPR at 0.1% FPR, then AUC): its scores "
            "split by the records' class and by whether the target predicts them correctly."
        )
    ]
    ranked = [s for s in by_class if math.isfinite(s.auc)]
    if ranked:
        top = max(ranked, key=lambda s: (s.auc, s.tpr_at_1 if math.isfinite(s.tpr_at_1) else -1.0))
        blocks.append(
            Paragraph.of(
                "The most exposed class is ",
                Strong(top.key),
                f": AUC {fmt_num(top.auc)}, TPR at 1% FPR {fmt_num(top.tpr_at_1)} over {top.n:,} records.",
            )
        )
        blocks.append(_slice_table(by_class, title=f"{a.name} by class", head="class"))
    if by_pred:
        blocks.append(_slice_table(by_pred, title=f"{a.name} by prediction", head="prediction"))
    if len(blocks) == 1:
        blocks.append(Paragraph.of("No slices were stored for this attack."))
    if audit.records is not None and (scores := _scores(audit.records, a.name)) is not None:
        blocks.append(
            F.figure_block(
                "strongest_score_histogram",
                C.plot_histogram(C.score_histograms(scores), title=f"Membership scores: {a.name}"),
                title=f"Membership scores of members and non-members ({a.name})",
                caption="Density of the attack's score (higher: more likely a member). The more the two shapes "
                "differ, the more the target leaks.",
            )
        )
    return Section(f"Who is exposed: {a.name} by class and prediction", "who-is-exposed", tuple(blocks))


# ---------------------------------------------------------------------------- exposed records
def _as_image(x: NDArray[np.float32], shape: tuple[int, ...]) -> NDArray[np.float64]:
    """One record as an (H, W) or (H, W, 3) image in [0, 1] (channels first or last)."""
    img = np.asarray(x, dtype=np.float64).reshape(shape)
    if img.ndim == 3:
        img = np.moveaxis(img, 0, -1) if shape[0] in (1, 3) and shape[-1] not in (1, 3) else img
        img = img[..., 0] if img.shape[-1] == 1 else img
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def plot_image_grid(images: Sequence[NDArray[np.float64]], titles: Sequence[str], *, title: str) -> Figure:
    """A grid of images (each of shape (H, W) or (H, W, 3), values in [0, 1]), each with its title."""
    cols = min(8, len(images))
    rows = math.ceil(len(images) / cols)
    with F.styled():
        fig = F.new_figure(max(1.3 * cols, 4.6), 1.5 * rows + 0.7)
        for i, (img, text) in enumerate(zip(images, titles, strict=True)):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(text, fontsize=7)
            ax.set_axis_off()
        fig.suptitle(title)
    return fig


def _exposed_section(audit: AuditData, a: AttackResult) -> Section:
    records = audit.records.of_attack(a.name) if audit.records is not None else None
    exposed = audit.exposed.get(a.name)
    index: dict[str, int] = {}
    if records is not None:
        index = {i: k for k, i in enumerate(records.id.tolist())}
    if exposed is not None:
        ids = list(exposed.ids)
    elif records is not None:
        members = np.flatnonzero(records.member)
        ids = [str(records.id[k]) for k in members[np.argsort(records.rank[members], kind="stable")]]
    else:
        ids = []
    intro = Paragraph.of(
        f"The members {a.name} finds most readily (highest score, rank 1 first): the records to look at first, for "
        "instance to remove, deduplicate or protect."
    )
    blocks: list[Block] = [intro]

    def score_of(k: int, rid: str) -> float:
        if rid in index and records is not None:
            return float(records.score[index[rid]])
        return float(exposed.scores[k]) if exposed is not None else math.nan

    shape = audit.data.record_shape
    if audit.data.is_image and exposed is not None and shape is not None:
        n = min(MAX_EXPOSED_IMAGES, len(ids))
        images = [_as_image(exposed.X[k], shape) for k in range(n)]
        titles = [f"id {ids[k]}\nscore {score_of(k, ids[k]):.3g}" for k in range(n)]
        blocks.append(
            F.figure_block(
                "most_exposed_records",
                plot_image_grid(images, titles, title=f"The {n} most exposed members ({a.name})"),
                title=f"The {n} members most exposed to {a.name}",
                caption="Each record drawn from its stored features (exposed.npz), with its id and membership score; "
                "grey levels are scaled per image.",
            )
        )
    elif ids:
        n = min(MAX_EXPOSED_ROWS, len(ids))
        total = exposed.X.shape[1] if exposed is not None else 0
        k_feat = min(_FEATURES_SHOWN, total)
        names = audit.data.feature_names
        feat = [names[j] if len(names) > j else f"feature {j + 1}" for j in range(k_feat)]
        rows = []
        for k in range(n):
            rid, at = ids[k], index.get(ids[k])
            known = records is not None and at is not None
            label = str(records.label[at]) if known else "–"  # type: ignore[union-attr]
            rank = f"{int(records.rank[at]):,}" if known else "–"  # type: ignore[union-attr]
            values = [f"{float(v):.4g}" for v in exposed.X[k, :k_feat]] if exposed is not None else []
            rows.append((rid, label, f"{score_of(k, rid):.4g}", rank, *values))
        caption = f"The first {k_feat} of {total} features." if total > k_feat else ""
        if exposed is None:
            caption = "exposed.npz is missing, so no features are shown."
        columns = ("id", "label", "score", "rank", *feat)
        align = ("l", "l") + ("r",) * (len(columns) - 2)
        blocks.append(Table(f"The {n} members most exposed to {a.name}", columns, tuple(rows), caption, align))
    else:
        blocks.append(Paragraph.of("No per-record results were stored, so no record can be named."))
    return Section("The most exposed records", "the-most-exposed-records", tuple(blocks))


# ------------------------------------------------------------------------ data, configuration
def _data_section(audit: AuditData) -> Section:
    d = audit.data
    classes = ", ".join(d.classes[:20]) + (f", … ({len(d.classes)} in all)" if len(d.classes) > 20 else "")
    facts = {
        "data": d.source or "–",
        "records": f"{d.n_records:,}",
        "members (in the target's training set)": f"{d.n_members:,}",
        "non-members": f"{d.n_nonmembers:,}",
        "attacker's population": _count(d.n_population) + (f" ({d.population_source})" if d.population_source else ""),
        "classes": (f"{d.n_classes}: " if d.n_classes else "") + (classes or "–"),
        "features": _count(d.n_features),
        "record shape": "table (no shape)" if d.record_shape is None else " × ".join(map(str, d.record_shape)),
    }
    run = {
        "command": audit.command or "–",
        "status": audit.status + (f" ({audit.error})" if audit.error else ""),
        "seed": "–" if audit.seed is None else str(audit.seed),
        "created": audit.created or "–",
        "finished": audit.finished or "–",
        "format": audit.format,
        "audit directory": str(audit.path),
    }
    blocks: list[Block] = [key_value_table("Data", facts), key_value_table("Audit", run)]
    if audit.queries:
        blocks.append(key_value_table("Queries to the target", {k: _plain(v) for k, v in audit.queries.items()}))
    if audit.timings:
        blocks.append(key_value_table("Timings", audit.timings, seconds=lambda _k: True))
    for title, mapping in (("Versions", audit.versions), ("Hardware", audit.hardware)):
        if mapping:
            blocks.append(key_value_table(title, mapping))
    blocks.append(Paragraph.of("The validated audit configuration (audit.json, key config):"))
    blocks.append(Preformatted(json.dumps(dict(audit.config), indent=2, sort_keys=True, default=str)))
    return Section("Data and configuration", "data-and-configuration", tuple(blocks))


def _plain(v: Any) -> str:
    if v is None:
        return "none"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


# ------------------------------------------------------------------------------------ document
def audit_document(audit: AuditData) -> Document:
    """The report of an audit directory: verdict, target, attacks, exposure, records, data and configuration."""
    t, d = audit.target, audit.data
    summary = _verdict(audit)
    items: list[tuple[Any, ...]] = [
        (
            "Audited: ",
            Strong(t.source or "the model"),
            f" ({t.description or t.family or 'model'}) on {d.source or 'the data'}: {d.n_members:,} members, "
            f"{d.n_nonmembers:,} non-members; accuracy {fmt_num(t.member_accuracy)} on members, "
            f"{fmt_num(t.nonmember_accuracy)} on non-members.",
        )
    ]
    best = audit.strongest()
    if best is not None:
        items.append(
            (
                "Strongest attack: ",
                Strong(best.name),
                f": ROC AUC {fmt_bracket(best.auc)}; TPR at 0.1% FPR {fmt_bracket(best.tpr_at_01)} "
                f"({_pct(best.tpr_at_01.mean)} of members); TPR at 1% FPR {fmt_bracket(best.tpr_at_1)}.",
            )
        )
    warning = accuracy_warning(t, d.n_classes or len(d.classes) or None)
    if warning:
        items.append((Strong("Check the data: "), warning))
    if t.answers in DEFENCES:
        items.append(("Output defence: ", DEFENCES[t.answers]))
    items.append((_HOW_TO_READ,))
    summary.append(Bullets(tuple(items)))
    sections = [_target_section(audit), _attacks_section(audit)]
    if best is not None:
        sections += [_slices_section(audit, best), _exposed_section(audit, best)]
    sections.append(_data_section(audit))
    when = f", finished {audit.finished}" if audit.finished else ""
    return Document(
        f"Membership inference audit: {t.source or audit.path.name}",
        f"miaudit audit of {audit.path.name} ({audit.status}{when})"
        + (f"; seed {audit.seed}" if audit.seed is not None else ""),
        tuple(summary),
        tuple(sections),
    )
