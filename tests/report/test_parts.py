"""Tables, figures' data and formatting: the pieces a report is made of, checked on their own."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from miaudit.metrics import auc, tpr_at_fpr
from miaudit.report import load_run
from miaudit.report.curves import roc_band, score_histograms
from miaudit.report.document import Bullets, Document, Paragraph, Section, Strong, Table
from miaudit.report.figures import gap_vs_auc, metric_series, plot_lines, render_png
from miaudit.report.html import png_size, render_html
from miaudit.report.labels import fmt_bracket, fmt_ci, fmt_interval_text, metric_name, setting_label
from miaudit.report.markdown import render_markdown
from miaudit.report.records import Finding, Interval, ScoreSet, SummaryRow
from miaudit.report.run_report import best_setting
from miaudit.report.tables import (
    attack_dims,
    attack_table,
    best_pair_table,
    findings_table,
    layout,
    paper_agreement,
    pivot_table,
    varying_dims,
)


@pytest.fixture(scope="module")
def run(run_dir: Path):
    return load_run(run_dir)


def _study(run, study: str):
    return [r for r in run.summary if r.study == study]


@pytest.mark.parametrize(
    ("study", "rows", "cols"),
    [
        ("1", ("n_shadows",), ("attack_model",)),  # Table 1
        ("2", ("n_shadows",), ()),  # Figure 1
        ("3", ("n_shadows",), ("target_size",)),  # Table 3
        ("4", ("n_shadows",), ("classes",)),
        ("5", ("n_shadows",), ("arch",)),  # Table 4; shadow_arch follows arch, so it is no dimension
        ("6", ("arch",), ("shadow_arch",)),  # matched on the diagonal
    ],
)
def test_tables_are_laid_out_like_the_papers(run, study: str, rows: tuple, cols: tuple) -> None:
    assert layout([r for r in _study(run, study) if r.metric == "accuracy"]) == (rows, cols)


def test_table_1_puts_the_paper_beside_ours(run) -> None:
    t = pivot_table(_study(run, "1"), metric="accuracy", title="t")
    assert t is not None
    assert t.columns[:3] == ("shadows", "ours", "paper")
    assert t.groups[:2] == (("", 1), ("Logistic regression", 2))
    assert t.flat_columns()[:3] == ("shadows", "Logistic regression (ours)", "Logistic regression (paper)")
    assert t.flat_columns()[-4:] == (  # the paper's order: LR, tree, RBF SVM, linear SVM
        "RBF kernel SVM (ours)",
        "RBF kernel SVM (paper)",
        "Linear SVM (ours)",
        "Linear SVM (paper)",
    )
    six = next(row for row in t.rows if row[0] == "6")
    linear = t.flat_columns().index("Linear SVM (paper)")
    assert six[linear] == "0.6962"
    assert " ± " in six[linear - 1]
    assert [row[0] for row in t.rows] == ["4", "5", "6", "7"]


def test_a_column_without_published_values_has_no_paper_column(run) -> None:
    t = pivot_table(_study(run, "3"), metric="accuracy", title="t")
    assert t is not None
    assert t.flat_columns() == (
        "shadows",
        "1,500 members (ours)",
        "3,000 members (ours)",
        "3,000 members (paper)",
        "6,000 members (ours)",
        "6,000 members (paper)",
        "12,000 members (ours)",
    )
    auc_table = pivot_table(_study(run, "3"), metric="auc", title="t", with_paper=False)
    assert auc_table is not None and not any("paper" in c for c in auc_table.columns)
    assert pivot_table(_study(run, "3"), metric="no-such-metric", title="t") is None


def test_table_2_is_the_papers_best_pair(run) -> None:
    t = best_pair_table(_study(run, "1"), title="t")
    assert t is not None
    assert t.columns[1:3] == ("ours: Linear SVM, 6 shadows (the paper's best pair)", "paper")
    values = {row[0]: row[2] for row in t.rows}
    assert values == {
        "attack accuracy": "0.6962",
        "attack precision": "0.6237",
        "attack recall": "0.9892",
        "ROC AUC": "–",
        "TPR at 1% FPR": "–",
        "TPR at 0.1% FPR": "–",
    }


def test_paper_agreement_counts_cells_inside_our_interval(run) -> None:
    inside, total = paper_agreement(run.summary)
    expected = [r.low <= r.paper <= r.high for r in run.summary if r.paper is not None]
    assert total == len(expected) == 16 + 2 + 10 + 16  # Tables 1, 2 (precision, recall), 3 and 4
    assert inside == sum(expected)


def test_best_setting_has_the_highest_mean_auc(run) -> None:
    best = best_setting(list(run.summary))
    assert best is not None and best.metric == "auc"
    assert best.mean == max(r.mean for r in run.summary if r.metric == "auc")
    assert best_setting([r for r in run.summary if r.metric != "auc"]) is None


def test_roc_band_agrees_with_the_metrics(run) -> None:
    scores = run.scores(best_setting(list(run.summary)).setting_id)
    band = roc_band(scores)
    for level in (0.01, 0.1, 0.5):
        i = int(np.flatnonzero(np.isclose(band.fpr, level))[0])
        per_seed = [
            tpr_at_fpr(np.r_[np.ones(m.size), np.zeros(n.size)], np.r_[m, n], level) for m, n in scores.by_seed.values()
        ]
        assert band.mean[i] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert band.low[i] <= band.mean[i] <= band.high[i]
    aucs = [auc(np.r_[np.ones(m.size), np.zeros(n.size)], np.r_[m, n]) for m, n in scores.by_seed.values()]
    assert band.auc.mean == pytest.approx(np.mean(aucs)) and band.auc.n == 3
    stored = next(r for r in run.summary if r.setting_id == scores.label and r.metric == "auc")
    assert band.auc.mean == pytest.approx(stored.mean)  # the curve and the table tell the same story
    assert band.min_fpr == pytest.approx(1 / 300)


def test_one_seed_gives_curves_without_a_band() -> None:
    rng = np.random.default_rng(0)
    one = ScoreSet("x", {"0": (rng.normal(1, 1, 50), rng.normal(0, 1, 80))})
    band = roc_band(one)
    assert np.isnan(band.low).all() and not band.auc.has_ci
    hist = score_histograms(one, bins=10)
    assert hist.edges.size == 11 and np.isnan(hist.member[1]).all()
    assert (hist.n_members, hist.n_nonmembers, hist.n_seeds) == (50, 80, 1)


def test_histograms_are_densities_on_common_bins(run) -> None:
    hist = score_histograms(run.scores(run.summary[0].setting_id), bins=20)
    widths = np.diff(hist.edges)
    assert np.sum(hist.member[0] * widths) == pytest.approx(1.0)
    assert np.sum(hist.nonmember[0] * widths) == pytest.approx(1.0)


def test_series_carry_means_intervals_and_paper_values(run) -> None:
    series = metric_series(_study(run, "5"), metric="accuracy", x="n_shadows", group_by="arch")
    assert [s.label for s in series] == ["dense", "dropout", "simple"]  # plain label function: str
    dense = series[0]
    assert dense.x == tuple(range(2, 10)) and dense.has_paper
    assert dense.paper[0] == 0.6370 and np.all(dense.low <= dense.mean)
    assert not series[2].has_paper
    png = render_png(plot_lines(series, title="t", xlabel="x", ylabel="y", chance=0.5))
    assert png_size(png)[0] > 300


def test_gap_vs_auc_shows_the_overfitting_story(run) -> None:
    groups, r = gap_vs_auc(run.summary)
    assert len(groups) == 6
    assert sum(g.gap[0].size for g in groups) == len({x.setting_id for x in run.summary})
    assert r > 0.5  # the fixture makes overfitting leak


def test_formatting() -> None:
    assert fmt_ci(Interval(0.61234, 0.6, 0.63, 0.01, 3)) == "0.612 ± 0.018"
    assert fmt_ci(Interval(0.61234)) == "0.612"
    assert fmt_ci(Interval(math.nan)) == "–"
    assert fmt_interval_text(Interval(0.5, 0.4, 0.6, 0.1, 5)) == "0.500 (95% CI [0.400, 0.600], 5 seeds)"
    assert fmt_interval_text(Interval(0.5)) == "0.500 (1 seed, no interval)"
    assert fmt_bracket(Interval(0.61234, 0.6, 0.63, 0.01, 3)) == "0.612 [0.600, 0.630]"
    assert fmt_bracket(Interval(0.61234, math.nan, math.nan, math.nan, 2)) == "0.612"
    assert fmt_bracket(Interval(812.0, 800.0, 824.0, 5.0, 3), 0) == "812 [800, 824]"
    assert fmt_bracket(Interval(math.nan)) == "–"
    assert (
        metric_name("tpr_at_fpr_0.001") == "TPR at 0.1% FPR" and metric_name("tpr_at_fpr_1e-05") == "TPR at 0.001% FPR"
    )
    assert setting_label({"attack_model": "rbf-svm", "n_shadows": 1, "target_size": 12000}) == (
        "RBF kernel SVM, 1 shadow, 12,000 members"
    )
    assert setting_label({"attack": "lira", "attack_model": "", "n_shadows": 8}) == "lira attack, 8 shadows"
    assert metric_name("queries") == "queries" and metric_name("attack_time_s") == "attack time (s)"


def test_renderers_escape_everything() -> None:
    evil = '<img src="https://evil.example/x.png"> & | *bold* `code`'
    doc = Document(
        title=evil,
        subtitle=evil,
        summary=(Paragraph.of(evil, Strong(evil)), Bullets(((evil,),))),
        sections=(Section(evil, "s", (Table(evil, (evil, "b"), ((evil, "2"),), caption=evil),)),),
    )
    html = render_html(doc)
    assert "<img" not in html and "https://evil" in html  # as text only
    assert html.count("&lt;img src=&quot;https://evil.example/x.png&quot;&gt;") >= 6
    md = render_markdown(doc)
    assert not re.search(r"(?<!\\)<img", md) and "\\<img" in md
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 1 for line in table_lines)  # the | in the text did not split a cell


def _row(attack: str, model: str, shadows: int | None, size: int, metric: str = "auc", mean: float = 0.6) -> SummaryRow:
    return SummaryRow("9", f"{attack}-{model}-{shadows}-{size}", attack, model, shadows, size, 10, "simple", "simple",
                      metric, mean, mean - 0.01, mean + 0.01, 0.01, 3, None)  # fmt: skip


def test_columns_that_follow_the_attack_are_no_dimension() -> None:
    """The Shokri classifier varies only because the attack does; the target size varies within each attack."""
    rows = [_row("shokri", "lr", 6, t) for t in (1000, 3000)] + [_row("loss", "", None, t) for t in (1000, 3000)]
    assert varying_dims(rows) == ["attack", "target_size"]
    assert attack_dims(rows) == ["attack_model", "n_shadows"]
    same_attack = [_row("shokri", m, 6, 1000) for m in ("lr", "tree")]
    assert varying_dims(same_attack) == ["attack_model"] and attack_dims(same_attack) == []
    mixed = [_row("shokri", "lr", k, 1000) for k in (4, 6)] + [_row("lira", "", 8, 1000)]
    assert varying_dims(mixed) == ["attack", "n_shadows"] and attack_dims(mixed) == ["attack_model"]


def test_attack_table_needs_two_attacks_and_sorts_by_auc() -> None:
    assert attack_table([_row("shokri", "lr", 6, 1000)], title="t") is None
    rows = [_row("loss", "", None, 1000, mean=0.55), _row("lira", "", 8, 1000, mean=0.81),
            _row("shokri", "lr", 6, 1000, mean=0.62)]  # fmt: skip
    rows.append(_row("lira", "", 8, 1000, metric="queries", mean=812.0))
    t = attack_table(rows, title="t")
    assert t is not None
    assert [r[0] for r in t.rows] == ["lira", "shokri", "loss"]
    cells = dict(zip(t.columns, t.rows[0], strict=True))
    assert cells["ROC AUC"] == "0.810 [0.800, 0.820]" and cells["queries"] == "812 [812, 812]"
    assert dict(zip(t.columns, t.rows[2], strict=True))["queries"] == "–"  # loss stored no query count
    assert "TPR at 1% FPR" not in t.columns  # no row has it


def test_findings_table_shows_margin_and_seeds_needed() -> None:
    findings = [
        Finding("F1", "1", "claim", "negligible", difference=0.001, low=-0.002, high=0.004, n=5, margin=0.01,
                seeds_needed=None),
        Finding("F2", "2", "claim", "inconclusive", difference=-0.012, low=-0.024, high=0.001, n=5, margin=0.005,
                seeds_needed=14),
    ]  # fmt: skip
    t = findings_table(findings)
    rows = [dict(zip(t.columns, r, strict=True)) for r in t.rows]
    assert [(r["margin"], r["seeds needed"], r["verdict"]) for r in rows] == [
        ("±0.010", "–", "negligible"),
        ("±0.005", "14", "inconclusive"),
    ]
    assert rows[1]["difference [95% CI]"] == "-0.012 [-0.024, +0.001]"
    assert t.badge_columns == (t.columns.index("verdict"),) and "negligible:" in t.caption
    html = render_html(Document("t", "s", (), (Section("s", "s", (t,)),)))
    assert '<span class="badge v-negligible">negligible</span>' in html
