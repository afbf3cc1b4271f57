"""The one composer: what each kind of run directory's report says, checked against the run's own files."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from miaudit.report import build_document, build_report, load_run
from miaudit.report.document import Document, FigureBlock, Section, Table


def _sections(doc: Document) -> list[Section]:
    out: list[Section] = []

    def walk(s: Section) -> None:
        out.append(s)
        for sub in s.subsections:
            walk(sub)

    for s in doc.sections:
        walk(s)
    return out


def _table(doc: Document, title_end: str) -> Table:
    (table,) = [t for t in doc.tables() if t.title.endswith(title_end)]
    return table


def _cell(row: dict[str, str], digits: int) -> str:
    """How the comparison shows a summary.csv row: ``mean [low, high]``, or the mean alone without an interval."""
    mean = float(row["mean"])
    if row["low"] == "" or row["high"] == "":
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{float(row['low']):.{digits}f}, {float(row['high']):.{digits}f}]"


def _csv_cells(summary: list[dict[str, str]], study: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{attack: {metric: summary row}}`` of one study, from summary.csv as text."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for r in summary:
        if r["study"] == study:
            out.setdefault(r["attack"], {})[r["metric"]] = r
    return out


COLUMNS = {"ROC AUC": ("auc", 3), "TPR at 1% FPR": ("tpr_at_fpr_0.01", 3), "TPR at 0.1% FPR": ("tpr_at_fpr_0.001", 3),
           "TPR at 0 FPR": ("tpr_at_fpr_0", 3), "attack accuracy": ("accuracy", 3), "queries": ("queries", 0),
           "attack time (s)": ("attack_time_s", 2)}  # fmt: skip


def _check_comparison(table: Table, summary: list[dict[str, str]], study: str) -> None:
    """Every cell of the attack table is the summary.csv row it claims; rows run by mean AUC, best first."""
    expected = _csv_cells(summary, study)
    assert [row[0] for row in table.rows] == sorted(expected, key=lambda a: -float(expected[a]["auc"]["mean"]))
    for row in table.rows:
        cells = dict(zip(table.columns, row, strict=True))
        for column, (metric, digits) in COLUMNS.items():
            assert cells[column] == _cell(expected[row[0]][metric], digits), (row[0], column)
        assert cells["seeds"] == expected[row[0]]["auc"]["n"]


@pytest.fixture(scope="module")
def repro_doc(repro_run: Path) -> Document:
    return build_document(repro_run)[0]


@pytest.fixture(scope="module")
def compare_doc(compare_run: Path) -> Document:
    return build_document(compare_run)[0]


@pytest.fixture(scope="module")
def attack_doc(attack_run: Path) -> Document:
    return build_document(attack_run)[0]


# ----------------------------------------------------------------------------- attack comparison
def test_the_comparison_appears_exactly_where_the_attack_varies(repro_doc: Document, repro_run: Path) -> None:
    run = load_run(repro_run)
    varies = {s for s in run.studies if len({r.attack for r in run.summary if r.study == s}) > 1}
    assert varies == {"7"}
    titles = {s.title for s in _sections(repro_doc)}
    compared = {t for t in titles if t.endswith(": attacks compared")}
    assert compared == {"Study 7: Attacks on the simple network: attacks compared"}
    (study7,) = [s for s in repro_doc.sections if s.title.startswith("Study 7")]
    (study1,) = [s for s in repro_doc.sections if s.title.startswith("Study 1")]
    assert [sub.title for sub in study7.subsections] == ["Study 7: Attacks on the simple network: attacks compared"]
    assert study1.subsections == ()
    figures = [f.name for f in repro_doc.figures()]
    assert [f for f in figures if "attacks_roc" in f] == ["study7_attacks_roc_loglog"]
    # study 1 keeps the tables it always had; study 7 varies only the attack, so its comparison replaces them
    assert any(t.title.startswith("Study 1:") and "attack accuracy" in t.title for t in repro_doc.tables())
    assert not any(t.title.startswith("Study 7:") and "attack accuracy" in t.title for t in repro_doc.tables())


def test_comparison_cells_are_the_csv_values(repro_doc: Document, repro_run: Path, summary_of) -> None:
    table = _table(repro_doc, "the attacks side by side")
    assert table.columns[:2] == ("attack", "configuration")
    _check_comparison(table, summary_of(repro_run), "7")
    config = {row[0]: row[1] for row in table.rows}
    assert config == {"shokri": "Linear SVM, 6 shadows", "loss": "–", "lira": "8 shadows"}


def test_a_compare_run_is_one_comparison(compare_doc: Document, compare_run: Path, summary_of) -> None:
    assert compare_doc.title == "Membership inference audit: attacks compared"
    table = _table(compare_doc, "the attacks side by side")
    assert len(table.rows) == 3
    _check_comparison(table, summary_of(compare_run), "compare")
    assert {f.name for f in compare_doc.figures()} == {
        "best_roc_linear",
        "best_roc_loglog",
        "best_score_histogram",
        "compare_attacks_roc_loglog",
    }
    titles = [s.title for s in _sections(compare_doc)]
    assert "Attack comparison" in titles and "Findings and verdicts" not in titles
    assert "Overfitting and leakage" not in titles  # every attack hits the same targets: one gap, nothing to plot


def test_two_seeds_give_means_without_intervals(make_compare_run, tmp_path: Path, summary_of) -> None:
    run = make_compare_run(tmp_path / "two", seeds=(0, 1), n=80)
    summary = summary_of(run)
    assert all(r["low"] == "" and r["high"] == "" for r in summary)
    table = _table(build_document(run)[0], "the attacks side by side")
    _check_comparison(table, summary, "compare")
    assert not any("[" in cell for row in table.rows for cell in row)


def test_the_comparison_roc_pools_the_seeds(compare_doc: Document, compare_run: Path) -> None:
    import numpy as np

    from miaudit.metrics import auc
    from miaudit.report.curves import pooled_roc

    run = load_run(compare_run)
    sid = next(r.setting_id for r in run.summary if r.attack == "lira")
    scores = run.scores(sid)
    curve = pooled_roc(scores, label="lira")
    member = np.concatenate([m for m, _ in scores.by_seed.values()])
    nonmember = np.concatenate([n for _, n in scores.by_seed.values()])
    y = np.r_[np.ones(member.size), np.zeros(nonmember.size)]
    assert curve.auc == pytest.approx(auc(y, np.r_[member, nonmember]))
    assert (curve.n_members, curve.n_nonmembers, curve.n_seeds) == (600, 600, 3)
    assert curve.min_fpr == pytest.approx(1 / 600)
    assert curve.fpr[0] == 0 and curve.tpr[-1] == 1 and np.all(np.diff(curve.fpr) >= 0)
    (fig,) = [f for f in compare_doc.figures() if f.name == "compare_attacks_roc_loglog"]
    assert "all 3 seeds pooled" in fig.caption


def test_a_study_varying_the_attack_and_more_gets_a_row_per_setting(make_run, tmp_path: Path, summary_of) -> None:
    """Attack x target size: the comparison keeps one row per setting, the target size beside the attack."""
    base = {"study": "8", "classes": 10, "arch": "simple", "shadow_arch": "simple"}
    runs = []
    for size in (1000, 3000):
        for attack, model, shadows in (("shokri", "linear-svm", 6), ("loss", "", None)):
            s = {**base, "attack": attack, "attack_model": model, "n_shadows": shadows, "target_size": size}
            runs.append({**s, "setting_id": f"s8-{attack}-t{size}"})
    run = make_run(tmp_path / "grid", runs, seeds=(0, 1, 2), n=100)
    doc = build_document(run)[0]
    table = _table(doc, "the attacks side by side")
    assert table.columns[:3] == ("attack", "configuration", "target size")
    assert table.rows[0][2] == "1,000" and len(table.rows) == 4
    summary = summary_of(run)
    for row in table.rows:
        size = int(row[2].replace(",", ""))
        csv_row = next(r for r in summary if r["attack"] == row[0] and r["target_size"] == str(size)
                       and r["metric"] == "auc")  # fmt: skip
        assert row[table.columns.index("ROC AUC")] == _cell(csv_row, 3)
    (fig,) = [f for f in doc.figures() if f.name == "study8_attacks_roc_loglog"]
    assert "One curve per setting" in fig.caption
    # target size varies too, so the study keeps its usual tables and figure
    assert any("attack accuracy" in t.title for t in doc.tables())


# ---------------------------------------------------------------------------------- single attack
def test_one_attack_one_seed_is_the_compact_view(attack_doc: Document, attack_run: Path) -> None:
    assert attack_doc.title == "Membership inference audit: shokri attack, Linear SVM, 6 shadows"
    assert [f.name for f in attack_doc.figures()] == ["roc_linear", "roc_loglog", "score_histogram"]
    assert [s.title for s in attack_doc.sections][:2] == ["ROC and membership scores", "Numbers"]
    assert not any("attacks compared" in s.title for s in _sections(attack_doc))
    with (attack_run / "results.csv").open(newline="") as fh:
        values = {r["metric"]: float(r["value"]) for r in csv.DictReader(fh)}
    table = _table(attack_doc, "Attack metrics")
    shown = dict(table.rows)
    assert shown["ROC AUC"] == f"{values['auc']:.4f}"
    assert shown["TPR at 0.1% FPR"] == f"{values['tpr_at_fpr_0.001']:.4f}"
    assert shown["queries"] == f"{int(values['queries']):,}"
    assert shown["attack time (s)"] == f"{values['attack_time_s']:.2f}"
    target = dict(_table(attack_doc, "Target model").rows)
    assert target["train-test gap"] == f"{values['generalization_gap']:.4f}"
    summary_text = " ".join(str(p) for b in attack_doc.summary for item in getattr(b, "items", ()) for p in item)
    assert "One seed, so no interval" in summary_text and f"{values['auc']:.3f}" in summary_text


def test_the_compact_view_names_its_attack(make_attack_run, tmp_path: Path) -> None:
    run = make_attack_run(tmp_path / "lira", attack="lira", n=120)
    out = build_report(run, formats=("md",))
    md = out["md"].read_text(encoding="utf-8")
    assert md.startswith("# Membership inference audit: lira attack, 8 shadows\n")
    assert {p.name for p in (run / "figures").iterdir()} == {"roc_linear.png", "roc_loglog.png", "score_histogram.png"}


# --------------------------------------------------------------------------------------- findings
def test_findings_show_margin_and_seeds_needed(repro_doc: Document, repro_run: Path) -> None:
    table = _table(repro_doc, "The paper's findings, tested")
    stored = {f["id"]: f for f in json.loads((repro_run / "findings.json").read_text())}
    assert [row[0] for row in table.rows] == list(stored)
    for row in table.rows:
        cells = dict(zip(table.columns, row, strict=True))
        f = stored[row[0]]
        assert cells["margin"] == f"±{f['margin']:.3f}"
        assert cells["seeds needed"] == (str(f["seeds_needed"]) if f["seeds_needed"] is not None else "–")
        assert cells["verdict"] == f["verdict"]
    assert table.badge_columns == (table.columns.index("verdict"), table.columns.index("verdict on AUC"))


def test_no_findings_no_findings_section(repro_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(repro_run, run, ignore=shutil.ignore_patterns("report*", "figures"))
    (run / "findings.json").write_text("[]")
    doc = build_document(run)[0]
    titles = [s.title for s in _sections(doc)]
    assert "Findings and verdicts" not in titles and "Study 1: Attack model x number of shadow models" in titles
    text = json.dumps([b.items for b in doc.summary if hasattr(b, "items")], default=str)
    assert "The paper's findings" not in text
    assert not any(t.title.startswith("The paper's findings") for t in doc.tables())


def test_strongest_attack_is_the_highest_mean_auc(repro_doc: Document, repro_run: Path, summary_of) -> None:
    aucs = [r for r in summary_of(repro_run) if r["metric"] == "auc"]
    best = max(aucs, key=lambda r: float(r["mean"]))
    (section,) = [s for s in repro_doc.sections if s.title == "The strongest attack"]
    assert best["setting_id"] in str(section.blocks[0])
    assert all(isinstance(b, FigureBlock) for b in section.blocks[1:]) and len(section.blocks) == 4
    assert math.isfinite(float(best["mean"]))
