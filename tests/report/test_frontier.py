"""Defence studies in the report: the privacy-utility frontier (study 7) and defences at the API (study 8).

Run directories are written here from hand-chosen numbers: each arm has a test accuracy and, per
attack, an AUC and a TPR at 0.1% FPR; each seed adds small seeded noise (or none), so the expected
tables, Pareto fronts, "best defence at each leakage level" sentences and the dropout-vs-DP choice
are known in advance. ``settings.json`` holds each setting's label, recipe and output policy as
``miaudit reproduce`` writes it; a copy without it stands for a run written before that file existed.
"""

from __future__ import annotations

import csv
import doctest
import hashlib
import importlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from miaudit.report import ReportError, build_document, build_report, load_run
from miaudit.report.arms import arm_study_kind, best_at_leakage, closest_arm, pareto_front, study_arms
from miaudit.report.document import Bullets, Document, FigureBlock, Paragraph, Section, Table
from miaudit.report.frontier import dropout_vs_dp, leakage_level_sentences, policy_sentences

SETTING_COLS = ("attack", "attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")
RESULT_COLS = ("study", "setting_id", "seed", *SETTING_COLS, "metric", "value")
SUMMARY_COLS = ("study", "setting_id", *SETTING_COLS, "metric", "mean", "low", "high", "std", "n", "paper")
PNG = b"\x89PNG\r\n\x1a\n"

# Study 7, hand-made: test accuracy, and per attack (shokri, lira) the AUC and the TPR at 0.1% FPR.
# lira is the strongest attack on every arm. (utility, its AUC): none (.855, .69), DP8 (.80, .60), DP1 (.70, .53),
# weight decay (.845, .66), dense (.865, .76), dropout (.815, .65), label only (.835, .58). Dropout and DP8 are
# beaten by label only (more utility, less leakage), on AUC and on TPR; every other arm is on the front.
ARMS7: list[dict[str, Any]] = [
    {"label": "none", "arch": "simple", "train": {}, "acc": 0.855,
     "auc": {"shokri": 0.62, "lira": 0.69}, "tpr": {"shokri": 0.004, "lira": 0.030}},
    {"label": "DP eps 8", "arch": "simple", "train": {"dp_epsilon": 8.0}, "acc": 0.80,
     "auc": {"shokri": 0.56, "lira": 0.60}, "tpr": {"shokri": 0.002, "lira": 0.008}},
    {"label": "DP eps 1", "arch": "simple", "train": {"dp_epsilon": 1.0}, "acc": 0.70,
     "auc": {"shokri": 0.51, "lira": 0.53}, "tpr": {"shokri": 0.001, "lira": 0.0015}},
    {"label": "weight decay 1e-2", "arch": "simple", "train": {"weight_decay": 0.01}, "acc": 0.845,
     "auc": {"shokri": 0.60, "lira": 0.66}, "tpr": {"shokri": 0.003, "lira": 0.020}},
    {"label": "dense (overfit)", "arch": "dense", "train": {"epochs": 60}, "acc": 0.865,
     "auc": {"shokri": 0.68, "lira": 0.76}, "tpr": {"shokri": 0.010, "lira": 0.060}},
    {"label": "dropout 0.5", "arch": "dropout", "train": {"epochs": 60}, "acc": 0.815,
     "auc": {"shokri": 0.61, "lira": 0.65}, "tpr": {"shokri": 0.003, "lira": 0.012}},
    {"label": "label only", "arch": "simple", "train": {}, "acc": 0.835, "target_acc": 0.855, "policy": "label_only",
     "auc": {"shokri": 0.50, "lira": 0.58}, "tpr": {"shokri": 0.001, "lira": 0.004}},
]  # fmt: skip
FRONT = ["DP eps 1", "label only", "weight decay 1e-2", "none", "dense (overfit)"]

# Study 8: one target (accuracy 0.85) behind four policies; the noise policy's answers are right less often.
ARMS8: list[dict[str, Any]] = [
    {"label": "full", "policy": "full", "acc": 0.85, "target": "t",
     "auc": {"shokri": 0.60, "lira": 0.68, "label-gap": 0.55},
     "tpr": {"shokri": 0.004, "lira": 0.025, "label-gap": 0.0}},
    {"label": "top-1", "policy": "top_k:1", "acc": 0.85, "target": "t",
     "auc": {"shokri": 0.57, "lira": 0.62, "label-gap": 0.55},
     "tpr": {"shokri": 0.002, "lira": 0.010, "label-gap": 0.0}},
    {"label": "noise 0.05", "policy": "noise:0.05", "acc": 0.80, "target_acc": 0.85, "target": "t",
     "auc": {"shokri": 0.56, "lira": 0.58, "label-gap": 0.55},
     "tpr": {"shokri": 0.002, "lira": 0.006, "label-gap": 0.0}},
    {"label": "label only", "policy": "label_only", "acc": 0.85, "target": "t",
     "auc": {"shokri": 0.50, "lira": 0.57, "label-gap": 0.55},
     "tpr": {"shokri": 0.001, "lira": 0.002, "label-gap": 0.0}},
]  # fmt: skip


def _aggregate(values: Sequence[float], *, bounded: bool = True) -> dict[str, Any]:
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    low = high = math.nan
    if x.size >= 3:
        half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
        low, high = mean - half, mean + half
        if bounded:  # accuracies, AUC and TPR lie in [0, 1]; the producer clips their intervals
            low, high = max(0.0, low), min(1.0, high)
    return {"mean": mean, "low": low, "high": high, "std": std, "n": int(x.size)}


def _cell(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})


def per_seed(arm: dict[str, Any], what: str, attack: str | None, seed: int, noise: float) -> float:
    """The fixture's value of one arm, metric and seed: the arm's number plus seeded noise.

    ``acc`` is the accuracy of the answers (served), ``target_acc`` the target's own; arms with the same
    ``target`` share their accuracies' noise (one trained model behind several policies).
    """
    base = arm.get("target_acc", arm["acc"]) if what == "target_acc" else arm["acc"] if what == "acc" else None
    if base is None:
        base = arm[what][attack]
    name = arm.get("target", arm["label"]) if what in ("acc", "target_acc") else arm["label"]
    key = [seed, int(hashlib.sha256(f"{name}|{what in ('acc', 'target_acc')}|{attack}".encode()).hexdigest()[:8], 16)]
    scale = {"tpr": 0.1, "acc": 0.5, "target_acc": 0.5}.get(what, 1.0)
    return min(1.0, max(0.0, base + float(np.random.default_rng(key).normal(0, noise)) * scale))


def setting_id(study: str, attack: str, arm: dict[str, Any]) -> str:
    tag = hashlib.sha256(arm["label"].encode()).hexdigest()[:8]
    return f"s{study}-{attack}-linear-svm-n6-t1000-call-{arm.get('arch', 'simple')}-{tag}"


def write_arm_run(
    path: Path,
    study: str,
    arms: list[dict[str, Any]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    noise: float = 0.004,
    transport: str = "local",
) -> Path:
    """A run directory of one study of arms, with settings.json; every attack runs on every arm."""
    path.mkdir(parents=True)
    (path / "scores").mkdir()
    attacks = list(arms[0]["auc"])
    results: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for attack in attacks:
        for arm in arms:
            sid = setting_id(study, attack, arm)
            cols = {"study": study, "setting_id": sid, "attack": attack, "attack_model": "linear-svm",
                    "n_shadows": 6, "target_size": 1000, "classes": 10, "arch": arm.get("arch", "simple"),
                    "shadow_arch": arm.get("arch", "simple")}  # fmt: skip
            policy = arm.get("policy", "full")
            values: dict[str, list[float]] = {}
            arrays = {}
            for seed in seeds:
                test = per_seed(arm, "target_acc", None, seed, noise)
                m = {
                    "auc": per_seed(arm, "auc", attack, seed, noise),
                    "tpr_at_fpr_0.001": per_seed(arm, "tpr", attack, seed, noise),
                    "accuracy": 0.5 + (per_seed(arm, "auc", attack, seed, noise) - 0.5) / 2,
                    "target_train_accuracy": min(1.0, test + 0.1),
                    "target_test_accuracy": test,
                    "generalization_gap": 0.1,
                }
                if "spent" in arm:
                    m["target_epsilon"] = arm["spent"]
                if policy != "full":
                    m["served_test_accuracy"] = per_seed(arm, "acc", None, seed, noise)
                for k, v in m.items():
                    results.append({**cols, "seed": seed, "metric": k, "value": v})
                    values.setdefault(k, []).append(v)
                rng = np.random.default_rng([seed, len(results)])
                arrays[f"member_seed{seed}"] = rng.normal(0.4, 1.0, 50)
                arrays[f"nonmember_seed{seed}"] = rng.normal(0.0, 1.0, 50)
            np.savez(path / "scores" / f"{sid}.npz", **arrays)
            for k, vals in values.items():
                summary.append({**cols, "metric": k, **_aggregate(vals, bounded=k != "target_epsilon"), "paper": None})
            settings[sid] = {"study": study, "label": arm["label"], "dataset": "fashion-mnist", "attack": attack,
                             "arch": arm.get("arch", "simple"), "train": {"epochs": 10, **arm.get("train", {})},
                             "output_policy": policy, "transport": transport, "n_refs": 8}  # fmt: skip
    _write_csv(path / "results.csv", RESULT_COLS, results)
    _write_csv(path / "summary.csv", SUMMARY_COLS, summary)
    (path / "findings.json").write_text("[]")
    (path / "settings.json").write_text(json.dumps(settings, indent=1))
    manifest = {
        "format": 2, "kind": "reproduce", "status": "complete", "seeds": list(seeds),
        "command": f"miaudit reproduce --studies {study}", "config": {"dataset": "fashion-mnist"},
        "studies": {study: {"title": f"Defences {study}", "paper_ref": "", "description": f"Arms of {study}."}},
    }  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def without_settings(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` as a run written before settings.json existed."""
    old = tmp_path / "old"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("report*", "figures", "settings.json"))
    return old


def fixture_mean(arm: dict[str, Any], what: str, attack: str | None, seeds: Sequence[int], noise: float) -> float:
    return float(np.mean([per_seed(arm, what, attack, s, noise) for s in seeds]))


@pytest.fixture(scope="module")
def run7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arm_run(tmp_path_factory.mktemp("s7") / "run", "7", ARMS7)


@pytest.fixture(scope="module")
def run8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arm_run(tmp_path_factory.mktemp("s8") / "run", "8", ARMS8, seeds=(0, 1), transport="http")


@pytest.fixture(scope="module")
def doc7(run7: Path) -> Document:
    return build_document(run7)[0]


@pytest.fixture(scope="module")
def doc8(run8: Path) -> Document:
    return build_document(run8)[0]


def _section(doc: Document, study: str) -> Section:
    (section,) = [s for s in doc.sections if s.title.startswith(f"Study {study}:")]
    return section


def _table(section: Section, title_end: str) -> Table:
    (table,) = [b for b in section.blocks if isinstance(b, Table) and b.title.endswith(title_end)]
    return table


def _bullets(section: Section, after: str) -> list[str]:
    """The bullet items that follow the paragraph starting with ``after``."""
    blocks = list(section.blocks)
    for i, b in enumerate(blocks):
        if isinstance(b, Paragraph) and "".join(getattr(p, "text", p) for p in b.parts).startswith(after):
            nxt = blocks[i + 1]
            assert isinstance(nxt, Bullets)
            return ["".join(str(p) for p in item) for item in nxt.items]
    raise AssertionError(f"no paragraph starting {after!r}")


def _text(section: Section) -> str:
    out = []
    for b in section.blocks:
        if isinstance(b, Paragraph):
            out.append("".join(getattr(p, "text", p) for p in b.parts))
        elif isinstance(b, Bullets):
            out += ["".join(getattr(p, "text", p) for p in item) for item in b.items]
    return "\n".join(out)


def _bracket(values: Sequence[float]) -> str:
    a = _aggregate(values)
    if math.isnan(a["low"]):
        return f"{a['mean']:.3f}"
    return f"{a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}]"


# ---------------------------------------------------------------------------------- pure functions
def test_pareto_front_hand_made() -> None:
    # (utility, leakage): c is beaten by a (more utility, less leakage); d ties e exactly; f has a NaN
    util = [0.90, 0.80, 0.85, 0.70, 0.70, math.nan, 0.95]
    leak = [0.60, 0.55, 0.65, 0.52, 0.52, 0.50, 0.80]
    assert pareto_front(util, leak) == [3, 4, 1, 0, 6]
    assert pareto_front([0.8], [0.6]) == [0]
    assert pareto_front([], []) == []
    # equal utility: only the lower leakage stays; equal leakage: only the higher utility
    assert pareto_front([0.8, 0.8, 0.7], [0.6, 0.7, 0.6]) == [0]


def test_pareto_front_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        pareto_front([0.8, 0.7], [0.6])


def test_best_at_leakage_and_closest_arm() -> None:
    util, leak = [0.85, 0.80, 0.70, 0.86], [0.70, 0.60, 0.53, 0.76]
    assert [best_at_leakage(util, leak, t) for t in (0.5, 0.55, 0.6, 0.7, 0.8)] == [None, 2, 1, 0, 3]
    assert best_at_leakage([0.8, 0.8], [0.6, 0.55], 0.6) == 1  # a tie in utility goes to the lower leakage
    assert closest_arm([0.80, 0.70, math.nan], 0.815) == 0 and closest_arm([math.nan], 0.8) is None


@pytest.mark.parametrize("module", ["arms", "setting_info", "frontier"])
def test_module_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"miaudit.report.{module}"))
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------- study 7
def test_frontier_table_numbers_equal_the_fixture(doc7: Document, run7: Path) -> None:
    table = _table(_section(doc7, "7"), "every defence and attack")
    assert table.columns == ("defence", "kind", "DP ε (target)", "attack", "utility", "ROC AUC", "TPR at 0.1% FPR",
                             "Pareto front", "seeds")  # fmt: skip
    assert len(table.rows) == len(ARMS7) * 2
    seeds = (0, 1, 2)
    by_key = {(r[0], r[3]): r for r in table.rows}
    for arm in ARMS7:
        for attack in ("shokri", "lira"):
            row = by_key[(arm["label"], attack)]
            acc = [per_seed(arm, "acc", None, s, 0.004) for s in seeds]
            assert row[4] == _bracket(acc)
            assert row[5] == _bracket([per_seed(arm, "auc", attack, s, 0.004) for s in seeds])
            assert row[6] == _bracket([per_seed(arm, "tpr", attack, s, 0.004) for s in seeds])
            assert abs(float(row[5].split()[0]) - arm["auc"][attack]) < 0.01  # the fixture's number, noise aside
            assert row[8] == "3"
            eps = arm["train"].get("dp_epsilon")
            assert row[2] == (f"{eps:g}" if eps else "–")
    kinds = {r[0]: r[1] for r in table.rows}
    assert kinds == {"none": "no defence", "DP eps 8": "DP-SGD", "DP eps 1": "DP-SGD",
                     "weight decay 1e-2": "weight decay", "dense (overfit)": "dense network", "dropout 0.5": "dropout",
                     "label only": "output policy"}  # fmt: skip
    # the output-policy arm's utility is the served accuracy (the fixture's served value), not the target's
    served = [per_seed(ARMS7[-1], "acc", None, s, 0.004) for s in seeds]
    assert by_key[("label only", "lira")][4] == _bracket(served)


def test_pareto_front_names_the_right_arms(doc7: Document, run7: Path) -> None:
    arms = study_arms(load_run(run7), "7")
    from miaudit.report.frontier_figures import frontier_panels

    panels = {p.metric: p for p in frontier_panels(arms)}
    assert [arms[i].label for i in panels["auc"].front] == FRONT
    assert [arms[i].label for i in panels["tpr_at_fpr_0.001"].front] == FRONT
    assert panels["auc"].attacks == ("lira",) * len(ARMS7)  # lira is the strongest on every arm
    table = _table(_section(doc7, "7"), "every defence and attack")
    on_front = {r[0] for r in table.rows if "AUC" in r[7]}
    assert on_front == set(FRONT)
    assert {r[0] for r in table.rows if r[7] == "–"} == {"DP eps 8", "dropout 0.5"}
    assert {r[0] for r in table.rows if r[7] == "AUC, TPR at 0.1% FPR"} == set(FRONT)


def test_best_defence_at_each_leakage_level(doc7: Document) -> None:
    items = _bullets(_section(doc7, "7"), "The best utility at each leakage level.")
    assert len(items) == 6
    auc55, auc60, auc70, tpr002, tpr01, tpr05 = items
    assert auc55.startswith("AUC at most 0.55: DP eps 1 gives the best utility, test accuracy 0.699")
    assert auc60.startswith("AUC at most 0.6: label only gives the best utility")  # 0.835 at AUC 0.58 beats DP 8
    assert "test accuracy through the API 0.83" in auc60 and "(strongest attack, lira: AUC 0.57" in auc60
    assert auc70.startswith("AUC at most 0.7: none gives the best utility")  # dense (0.865) leaks 0.76
    assert tpr002.startswith("TPR at 0.1% FPR at most 0.002: DP eps 1 gives the best utility")
    assert tpr01.startswith("TPR at 0.1% FPR at most 0.01: label only gives the best utility")
    assert tpr05.startswith("TPR at 0.1% FPR at most 0.05: none gives the best utility")


def test_best_defence_when_no_arm_is_low_enough(tmp_path: Path) -> None:
    arms = [dict(a, auc={k: v + 0.15 for k, v in a["auc"].items()}) for a in ARMS7[:3]]
    run = write_arm_run(tmp_path / "run", "7", arms, noise=0.0)
    sentences = leakage_level_sentences(study_arms(load_run(run), "7"))
    assert sentences[0] == "AUC at most 0.55: no defence keeps the strongest attack this low."
    assert sentences[1] == "AUC at most 0.6: no defence keeps the strongest attack this low."
    assert sentences[2].startswith("AUC at most 0.7: DP eps 1 gives the best utility, test accuracy 0.700")


def test_dropout_is_compared_with_the_dp_arm_of_closest_accuracy(run7: Path, doc7: Document) -> None:
    arms = study_arms(load_run(run7), "7")
    cmp = dropout_vs_dp(arms)
    assert cmp is not None
    assert cmp.dropout.label == "dropout 0.5" and cmp.dp.label == "DP eps 8"  # 0.80 is closer to 0.815 than 0.70
    seeds = (0, 1, 2)
    dropout, dp8 = ARMS7[5], ARMS7[1]
    diffs = [per_seed(dropout, "auc", "lira", s, 0.004) - per_seed(dp8, "auc", "lira", s, 0.004) for s in seeds]
    assert cmp.difference == pytest.approx(np.mean(diffs), abs=1e-12) and cmp.n == 3
    assert cmp.low < cmp.difference < cmp.high
    assert cmp.verdict == "contradicted"  # dropout leaks 0.05 AUC more than DP-SGD at about the same utility
    text = _text(_section(doc7, "7"))
    assert "The seed's dropout claim at equal utility." in text
    assert "DP-SGD is the better defence here" in text and "DP eps 8" in text


def test_dropout_closest_dp_arm_moves_with_the_accuracy(tmp_path: Path) -> None:
    arms = [dict(a) for a in ARMS7]
    arms[5] = dict(ARMS7[5], acc=0.72, auc={"shokri": 0.52, "lira": 0.531})  # now closest to DP eps 1 (0.70)
    run = write_arm_run(tmp_path / "run", "7", arms, seeds=(0, 1), noise=0.0)
    cmp = dropout_vs_dp(study_arms(load_run(run), "7"))
    assert cmp is not None and cmp.dp.label == "DP eps 1"
    assert cmp.difference == pytest.approx(0.001, abs=1e-9) and math.isnan(cmp.low) and cmp.n == 2
    assert cmp.verdict == "inconclusive" and "fewer than 3 seeds" in cmp.sentence
    # two seeds: no intervals, no error bars; the section and its figure are still drawn
    section = _section(build_document(run)[0], "7")
    (fig,) = [b for b in section.blocks if isinstance(b, FigureBlock)]
    assert fig.png.startswith(PNG) and "inconclusive" in _text(section)


def test_spent_epsilon_is_shown_when_the_run_records_it(run7: Path, tmp_path: Path) -> None:
    arms = [dict(a, spent=a["train"]["dp_epsilon"] - 0.01) if "dp_epsilon" in a["train"] else a for a in ARMS7]
    run = write_arm_run(tmp_path / "run", "7", arms)
    table = _table(_section(build_document(run)[0], "7"), "every defence and attack")
    assert table.columns[2:4] == ("DP ε (target)", "ε spent")
    spent = {r[0]: r[3] for r in table.rows}
    assert spent["DP eps 8"] == "7.99 [7.99, 7.99]" and spent["DP eps 1"] == "0.99 [0.99, 0.99]"
    assert spent["none"] == "–"
    # without the metric, no column
    assert "ε spent" not in _table(_section(build_document(run7)[0], "7"), "every defence and attack").columns


def test_frontier_figure_is_a_png(doc7: Document, run7: Path, tmp_path: Path) -> None:
    figs = [b for b in _section(doc7, "7").blocks if isinstance(b, FigureBlock)]
    assert [f.name for f in figs] == ["study7_frontier"]
    assert figs[0].png.startswith(PNG) and len(figs[0].png) > 20_000
    build_report(run7, out=tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "study7_frontier.png").read_bytes().startswith(PNG)
    assert "study7_frontier.png" in (tmp_path / "out" / "report.md").read_text()


def test_the_generic_study_tables_give_way(doc7: Document) -> None:
    section = _section(doc7, "7")
    assert not section.subsections  # no attack comparison folding arms into one cell
    tables = [b.title for b in section.blocks if isinstance(b, Table)]
    assert tables == ["Study 7: Defences 7: every defence and attack"]


# ------------------------------------------------------------------------------------- study 8
def test_api_table_numbers_equal_the_fixture(doc8: Document) -> None:
    table = _table(_section(doc8, "8"), "each policy and attack")
    assert table.columns == ("policy", "attack", "utility (through the API)", "ROC AUC", "TPR at 0.1% FPR", "seeds")
    seeds = (0, 1)
    rows = {(r[0], r[1]): r for r in table.rows}
    assert len(rows) == 12
    for arm in ARMS8:
        for attack in ("shokri", "lira", "label-gap"):
            row = rows[(arm["label"], attack)]
            # two seeds: the means alone, no interval
            assert row[2] == f"{fixture_mean(arm, 'acc', None, seeds, 0.004):.3f}"
            assert row[3] == f"{fixture_mean(arm, 'auc', attack, seeds, 0.004):.3f}"
            assert row[4] == f"{fixture_mean(arm, 'tpr', attack, seeds, 0.004):.3f}"
            assert row[5] == "2"


def test_one_sentence_per_policy(doc8: Document, run8: Path) -> None:
    arms = study_arms(load_run(run8), "8")
    assert arm_study_kind(load_run(run8), "8", arms) == "api"
    items = _bullets(_section(doc8, "8"), "What each policy buys.")
    assert items == policy_sentences(arms) and len(items) == 4
    full, top1, noise, label = items
    assert full.startswith("full: strongest attack lira") and "the reference" in full
    assert top1.startswith("top-1: strongest attack lira") and "removes some leakage (AUC -0.06" in top1
    assert "at no measurable cost in utility" in top1
    assert noise.startswith("noise 0.05: strongest attack lira") and "removes most of the leakage" in noise
    assert "at a cost of 5.0 points of test accuracy" in noise
    assert label.startswith("label only: strongest attack lira") and "removes most of the leakage" in label
    text = _text(_section(doc8, "8"))
    assert "Fewer than 3 seeds" in text
    gap = sorted(fixture_mean(a, "auc", "label-gap", (0, 1), 0.004) for a in ARMS8)
    assert f"the gap attack (correct = member) reaches AUC {gap[0]:.3f} to {gap[-1]:.3f} under every policy" in text


def test_policy_figure_is_a_png(doc8: Document) -> None:
    figs = [b for b in _section(doc8, "8").blocks if isinstance(b, FigureBlock)]
    assert [f.name for f in figs] == ["study8_policies"] and figs[0].png.startswith(PNG)


# --------------------------------------------------------------------------------- older runs
def test_a_run_without_settings_json_still_renders(run7: Path, run8: Path, tmp_path: Path) -> None:
    old7 = without_settings(run7, tmp_path / "a")
    written = build_report(old7)
    assert written["md"].is_file() and written["html"].is_file()
    doc = build_document(old7)[0]
    section = _section(doc, "7")
    assert "no settings.json" in _text(section)
    table = _table(section, "every defence and attack")
    labels = {r[0] for r in table.rows}
    assert len(labels) == len(ARMS7)  # the arms are still told apart, by their setting ids
    assert all(label.startswith("t1000-call-") for label in labels)
    assert "The seed's dropout claim" not in _text(section)  # which arm is DP-SGD is not known without settings
    old8 = without_settings(run8, tmp_path / "b")
    run = load_run(old8)
    arms = study_arms(run, "8")
    assert len(arms) == 4 and arm_study_kind(run, "8", arms) == "api"  # the same target behind every policy
    assert arm_study_kind(load_run(old7), "7", study_arms(load_run(old7), "7")) == "frontier"


def test_studies_without_arms_keep_their_sections(built: dict[str, Path], repro_run: Path) -> None:
    run = load_run(repro_run)
    assert study_arms(run, "7") == [] and study_arms(run, "1") == []  # study 7 there compares attacks only
    doc = build_document(repro_run)[0]
    assert not any(b.name.endswith(("_frontier", "_policies")) for b in doc.figures())
    assert "frontier" not in built["md"].read_text()


# ---------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "settings.json is not valid JSON"),
        ("[1, 2]", "must hold a JSON object of setting id -> setting; got list"),
        ('{"s": 3}', "setting 's' must be an object"),
        ('{"s": {"label": 5}}', "'label' must be text or null; got 5"),
        ('{"s": {"train": [1]}}', "'train' must be an object"),
        ('{"s": {"train": {"dp_epsilon": "eight"}}}', "train.dp_epsilon must be a finite number or null"),
        ('{"s": {"output_policy": 1}}', "'output_policy' must be text; got 1"),
    ],
)
def test_a_malformed_settings_json_is_refused(run8: Path, tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(run8, bad, ignore=shutil.ignore_patterns("report*", "figures"))
    (bad / "settings.json").write_text(content)
    with pytest.raises(ReportError, match=match):
        load_run(bad)
