"""Verdict logic on constructed results whose per-seed differences are known exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miaudit.studies.findings import VERDICTS, _finding_diffs, compute_findings, decide, verdict
from miaudit.studies.paper import FINDINGS

MARGIN = {f.id: f.margin for f in FINDINGS}
TINY = 2.0**-20  # a step that keeps sums of a few multiples of 0.25 exact in binary


def cell(am: str = "linear-svm", n: int = 6, t: int = 3000, c: int = 10, a: str = "simple", sa: str | None = None):
    return (am, n, t, c, a, a if sa is None else sa)


def rows_from(
    study: str, values: dict[tuple, Sequence[float | None]], *, attack: str | None = None, seeds: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Tidy rows, accuracy and AUC alike: ``values[cell][i]`` is seed ``seeds[i]``'s value (None: not run)."""
    rows = []
    for (am, n, t, c, a, sa), per_seed in values.items():
        for i, v in enumerate(per_seed):
            if v is None:
                continue
            for metric in ("accuracy", "auc"):
                row = dict(study=study, seed=seeds[i] if seeds else i, attack_model=am, n_shadows=n, target_size=t,
                           classes=c, arch=a, shadow_arch=sa, metric=metric, value=v)  # fmt: skip
                if attack is not None:
                    row["attack"] = attack
                rows.append(row)
    return rows


def size_rows(diffs: Sequence[float], **kw: Any) -> list[dict[str, Any]]:
    """Study 3 with 6,000 minus 3,000 equal to ``diffs[s]`` at every shadow count of seed ``s``."""
    base = [0.6 + 0.013 * s for s in range(len(diffs))]  # seeds differ; the pairing removes it
    values: dict[tuple, list[float | None]] = {}
    for n in (4, 6, 8):
        values[cell(n=n, t=3000)] = [b + 0.002 * n for b in base]
        values[cell(n=n, t=6000)] = [b + 0.002 * n + d for b, d in zip(base, diffs, strict=True)]
    return rows_from("3", values, **kw)


def one(rows: list[dict[str, Any]], fid: str) -> dict[str, Any]:
    (f,) = [f for f in compute_findings(rows) if f["id"] == fid]
    return f


# ---------------------------------------------------------------------------------------- the rule
def test_verdict_at_the_exact_margin_boundaries() -> None:
    # Equal differences: no spread, so the interval is the difference itself, exactly.
    m = 0.25
    assert verdict([m] * 3, direction=+1, margin=m)["verdict"] == "negligible"  # low == margin: not beyond it
    assert verdict([m + TINY] * 3, direction=+1, margin=m)["verdict"] == "supported"
    assert verdict([m - TINY] * 3, direction=+1, margin=m)["verdict"] == "negligible"
    assert verdict([-m] * 3, direction=+1, margin=m)["verdict"] == "negligible"
    assert verdict([-m - TINY] * 3, direction=+1, margin=m)["verdict"] == "contradicted"
    assert verdict([-m - TINY] * 3, direction=-1, margin=m)["verdict"] == "supported"
    assert verdict([m + TINY] * 3, direction=-1, margin=m)["verdict"] == "contradicted"
    assert verdict([-m] * 3, direction=-1, margin=m)["verdict"] == "negligible"
    # the equivalence claim: inside (boundary included) is supported, beyond is contradicted
    assert verdict([m] * 3, direction=0, margin=m)["verdict"] == "supported"
    assert verdict([-m] * 3, direction=0, margin=m)["verdict"] == "supported"
    assert verdict([m + TINY] * 3, direction=0, margin=m)["verdict"] == "contradicted"
    assert verdict([-m - TINY] * 3, direction=0, margin=m)["verdict"] == "contradicted"


def test_interval_just_inside_or_outside_the_margin_flips_the_verdict() -> None:
    # diffs c - e, c, c + e: mean c, sd e, t(0.975, 2) = 4.3026527, half-width 4.3026527 * e / sqrt(3) = 2.4841 e.
    e, margin = 0.004, 0.01
    half = 4.3026527 * e / math.sqrt(3)
    for c, want in ((margin + half + 2e-4, "supported"), (margin + half - 2e-4, "inconclusive")):
        v = verdict([c - e, c, c + e], direction=+1, margin=margin)
        assert v["low"] == pytest.approx(c - half, abs=1e-7)
        assert v["verdict"] == want, (c, v)
    for c, want in ((-margin - half - 2e-4, "contradicted"), (-margin - half + 2e-4, "inconclusive")):
        assert verdict([c - e, c, c + e], direction=+1, margin=margin)["verdict"] == want
    # negligible: the whole interval within [-0.01, +0.01]
    e = 0.001  # half-width 0.0024841
    for c, want in ((margin - 0.0024841 - 2e-4, "negligible"), (margin - 0.0024841 + 2e-4, "inconclusive")):
        assert verdict([c - e, c, c + e], direction=+1, margin=margin)["verdict"] == want
        assert verdict([-c + e, -c, -c - e], direction=-1, margin=margin)["verdict"] == want


def test_verdict_numbers_by_hand() -> None:
    v = verdict([-0.05, -0.04, -0.06], direction=-1, margin=0.01)
    # mean -0.05, sd 0.01, t(0.975, 2) = 4.303: half-width 4.303 * 0.01 / sqrt(3) = 0.02484
    assert v["difference"] == pytest.approx(-0.05)
    assert v["low"] == pytest.approx(-0.07484, abs=1e-4)
    assert v["high"] == pytest.approx(-0.02516, abs=1e-4)
    # t = -0.05 / (0.01 / sqrt(3)) = -8.660 on 2 df: p = 1 - |t| / sqrt(t^2 + 2) = 0.013072
    assert v["p_value"] == pytest.approx(0.013072, abs=1e-5)
    assert (v["verdict"], v["margin"], v["n"]) == ("supported", 0.01, 3)


def test_seeds_needed_matches_a_hand_computation() -> None:
    # diffs -0.005, -0.015, -0.025, -0.035: mean -0.02, sd sqrt(5e-4 / 3) = 0.0129099; gap |0.02| - 0.01 = 0.01.
    # n = 8: t(7) = 2.364624 -> 2.364624 * 0.0129099 / sqrt(8) = 0.010793 (not below 0.01);
    # n = 9: t(8) = 2.306004 -> 2.306004 * 0.0129099 / 3 = 0.009923 (below): 9 seeds.
    v = verdict([-0.005, -0.015, -0.025, -0.035], direction=-1, margin=0.01)
    assert v["verdict"] == "inconclusive"  # half-width 3.182446 * 0.0129099 / 2 = 0.020543: [-0.0405, +0.0005]
    assert v["seeds_needed"] == 9
    # Mean inside the margin: no n makes it supported, so the n for a negligible verdict.
    # diffs 0.0, 0.004, 0.008: mean 0.004, sd 0.004, gap 0.01 - 0.004 = 0.006.
    # n = 4: 3.182446 * 0.004 / 2 = 0.006365 (not below); n = 5: 2.776445 * 0.004 / sqrt(5) = 0.004967: 5 seeds.
    w = verdict([0.0, 0.004, 0.008], direction=+1, margin=0.01)
    assert (w["verdict"], w["seeds_needed"]) == ("inconclusive", 5)
    # Mean on the margin: no number of seeds decides it.
    assert verdict([0.25 - 0.125, 0.25, 0.25 + 0.125], direction=+1, margin=0.25)["seeds_needed"] is None


def test_fewer_than_three_seeds_give_no_interval_and_no_verdict() -> None:
    v = verdict([0.05, 0.06], direction=+1, margin=0.01)
    assert v["verdict"] == "inconclusive" and v["n"] == 2
    assert math.isnan(v["low"]) and math.isnan(v["high"]) and math.isnan(v["p_value"])
    assert v["difference"] == pytest.approx(0.055)
    # sd 0.0070711, gap 0.045: n = 3 already gives 4.303 * 0.0070711 / sqrt(3) = 0.01757 < 0.045
    assert v["seeds_needed"] == 3
    single = verdict([0.05], direction=+1, margin=0.01)
    assert single["verdict"] == "inconclusive" and single["seeds_needed"] is None
    empty = verdict([], direction=+1, margin=0.01)
    assert empty["verdict"] == "inconclusive" and empty["n"] == 0 and math.isnan(empty["difference"])
    f = one(size_rows([-0.05, -0.06]), "F3")
    assert f["verdict"] == "inconclusive" and f["n"] == 2 and f["low"] is not None and math.isnan(f["low"])
    assert "no interval from 2 seeds, margin 0.01; about 3 seeds would decide)" in f["sentence"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=3, max_size=8),
    st.sampled_from([0.0015, 0.01, 0.02, 0.05]),
)
def test_a_verdict_is_never_both_supported_and_contradicted(diffs: list[float], margin: float) -> None:
    up, down = (verdict(diffs, direction=d, margin=margin) for d in (+1, -1))
    low, high = up["low"], up["high"]
    claims = {
        "supported": low > margin,
        "contradicted": high < -margin,
        "negligible": -margin <= low and high <= margin,
    }
    assert sum(claims.values()) <= 1  # the three decisive regions are disjoint
    expected = next((k for k, hit in claims.items() if hit), "inconclusive")
    assert up["verdict"] == expected
    mirror = {"supported": "contradicted", "contradicted": "supported"}
    assert down["verdict"] == mirror.get(up["verdict"], up["verdict"])
    same = verdict(diffs, direction=0, margin=margin)["verdict"]
    assert same == ("supported" if claims["negligible"] else "contradicted" if low > margin or high < -margin
                    else "inconclusive")  # fmt: skip
    assert {up["verdict"], down["verdict"], same} <= set(VERDICTS)


def test_decide_without_an_interval_and_bad_arguments() -> None:
    assert decide(math.nan, math.nan, direction=+1, margin=0.01) == "inconclusive"
    with pytest.raises(ValueError, match=r"direction must be \+1, -1 .* or 0 .*; got 2"):
        verdict([0.1, 0.2, 0.3], direction=2, margin=0.01)
    with pytest.raises(ValueError, match=r"margin must be a positive finite number.*; got 0"):
        verdict([0.1, 0.2, 0.3], direction=1, margin=0)
    with pytest.raises(ValueError, match=r"margin must be a positive finite number.*; got inf"):
        decide(0.0, 0.1, direction=1, margin=math.inf)
    with pytest.raises(ValueError, match=r"low must not exceed high; got the interval \[0.2, 0.1\]"):
        decide(0.2, 0.1, direction=1, margin=0.01)
    with pytest.raises(ValueError, match=r"unknown finding id 'F9'; known: F1, F1b"):
        _finding_diffs(size_rows([0.0, 0.0, 0.0]), "F9")


# ---------------------------------------------------------------------------------- from result rows
def test_each_verdict_from_result_rows_with_known_differences() -> None:
    m = MARGIN["F3"]
    f = one(size_rows([-0.05, -0.04, -0.06, -0.05, -0.05]), "F3")
    assert f["verdict"] == "supported" and f["difference"] == pytest.approx(-0.05)
    assert one(size_rows([0.05, 0.04, 0.06]), "F3")["verdict"] == "contradicted"
    assert one(size_rows([0.001, -0.002, 0.0, 0.002, -0.001]), "F3")["verdict"] == "negligible"
    g = one(size_rows([-0.012, -0.024, 0.001, -0.02, -0.005]), "F3")
    assert g["verdict"] == "inconclusive" and g["low"] < -m < g["high"]
    # just beyond vs just short of the margin, through the whole pipeline (no spread: interval = difference)
    assert one(size_rows([-m - 1e-4] * 3), "F3")["verdict"] == "supported"
    assert one(size_rows([-m + 1e-4] * 3), "F3")["verdict"] == "negligible"


def test_the_record_keeps_its_keys_and_states_the_margin() -> None:
    f = one(size_rows([-0.05, -0.04, -0.06]), "F3")
    keys = {"id", "study", "claim", "paper_ref", "metric", "comparison", "difference", "low", "high", "p_value",
            "n", "verdict", "sentence", "auc", "margin", "seeds_needed"}  # fmt: skip
    assert keys <= set(f)
    assert f["comparison"] == "target size 6000 minus 3000, mean over shadow counts"
    # by hand, as in test_verdict_numbers_by_hand: mean -0.05, 95% CI [-0.0748, -0.0252]
    assert f["sentence"] == (
        "more training data (6,000 vs 3,000) lowers attack accuracy: supported "
        "(difference -0.050, 95% CI [-0.075, -0.025], margin 0.01, 3 seeds)"
    )
    assert f["auc"]["verdict"] == "supported" and f["auc"]["margin"] == 0.01
    # the inconclusive sentence says how many seeds would decide (see test_seeds_needed_matches_a_hand_computation)
    g = one(size_rows([-0.005, -0.015, -0.025, -0.035]), "F3")
    assert g["seeds_needed"] == 9
    assert g["sentence"].endswith(
        "inconclusive (difference -0.020, 95% CI [-0.041, +0.001], margin 0.01, 4 seeds; about 9 seeds would decide)"
    )


def test_rows_of_other_attacks_are_ignored() -> None:
    diffs = [-0.012, -0.024, 0.001, -0.02, -0.005]
    base = one(size_rows(diffs), "F3")
    # the same study run with another attack, with a large effect, on the same seeds
    loss = size_rows([-0.3] * 5, attack="loss")
    mixed = one(size_rows(diffs) + loss, "F3")
    assert (mixed["verdict"], mixed["difference"], mixed["low"], mixed["n"]) == (
        base["verdict"], base["difference"], base["low"], base["n"])  # fmt: skip
    assert base["verdict"] == "inconclusive"
    # rows that say "shokri" count as rows without the column
    named = one(size_rows(diffs, attack="shokri") + loss, "F3")
    assert (named["verdict"], named["difference"]) == (base["verdict"], base["difference"])
    # without any shadow-model rows the finding cannot be made
    assert compute_findings(loss) == []


def test_seeds_present_in_one_arm_only_are_left_out() -> None:
    diffs = [-0.05, -0.04, -0.06]
    rows = size_rows(diffs)
    # seed 9 ran only the 6,000-record arm, seed 8 only the 3,000-record arm
    rows += rows_from("3", {cell(n=n, t=6000): [0.99] for n in (4, 6, 8)}, seeds=[9])
    rows += rows_from("3", {cell(n=n, t=3000): [0.01] for n in (4, 6, 8)}, seeds=[8])
    # seed 7 has both arms but misses one shadow count in the 6,000-record arm
    rows += rows_from("3", {cell(n=n, t=3000): [0.5] for n in (4, 6, 8)}, seeds=[7])
    rows += rows_from("3", {cell(n=n, t=6000): [0.9] for n in (4, 6)}, seeds=[7])
    f = one(rows, "F3")
    assert f["n"] == 3 and f["difference"] == pytest.approx(-0.05)
    assert f["verdict"] == "supported"


def test_shadow_count_slope_classes_and_architectures() -> None:
    # F2: accuracy rises 0.004 per shadow (margin 0.0015), plus a per-seed offset the slope ignores
    counts = range(2, 10)
    up = {cell(n=n): [0.5 + 0.004 * n + 0.01 * s + 0.0005 * (-1) ** (n + s) for s in range(4)] for n in counts}
    f2 = one(rows_from("2", up), "F2")
    assert f2["verdict"] == "supported" and f2["difference"] == pytest.approx(0.004, abs=3e-4)
    assert f2["comparison"] == "slope of accuracy per added shadow model, shadows 2-9"
    flat = {cell(n=n): [0.5 + 0.0005 * n + 0.01 * s for s in range(4)] for n in counts}
    g2 = one(rows_from("2", flat), "F2")
    assert g2["verdict"] == "negligible" and g2["difference"] == pytest.approx(0.0005)
    assert "difference +0.0005, 95% CI [+0.0005, +0.0005], margin 0.0015, 4 seeds" in g2["sentence"]
    # a seed that lacks a shadow count is left out of the slope
    partial = rows_from("2", flat) + rows_from("2", {cell(n=n): [0.9 - 0.1 * n] for n in (2, 3)}, seeds=[6])
    assert one(partial, "F2")["n"] == 4

    cls = {cell(n=n, c=c): [(0.62 if c == 10 else 0.53) + 0.002 * s * n for s in range(3)]
           for n in (4, 5) for c in (5, 10)}  # fmt: skip
    f4 = one(rows_from("4", cls), "F4")
    assert f4["verdict"] == "supported" and f4["difference"] == pytest.approx(-0.09)

    level = {"simple": 0.55, "dense": 0.63, "dropout": 0.57}
    arch = {cell(n=n, a=a): [level[a] + 0.01 * s for s in range(3)] for n in (2, 3) for a in level}
    f5 = {f["id"]: f for f in compute_findings(rows_from("5", arch))}
    assert f5["F5a"]["verdict"] == "supported" and f5["F5a"]["difference"] == pytest.approx(0.08)
    assert f5["F5b"]["verdict"] == "supported" and f5["F5b"]["difference"] == pytest.approx(-0.06)


def test_best_pair_equivalence_and_mismatch() -> None:
    seeds = range(3)
    cells = {cell(am=am, n=n): [0.55 + 0.01 * s for s in seeds] for am in ("lr", "linear-svm") for n in (4, 6)}
    cells[cell(am="lr", n=4)] = [0.60 + 0.01 * s for s in seeds]  # the strongest competitor
    cells[cell(am="linear-svm", n=6)] = [0.65 + 0.01 * s for s in seeds]
    f1 = {f["id"]: f for f in compute_findings(rows_from("1", cells))}
    assert f1["F1"]["verdict"] == "supported" and f1["F1"]["difference"] == pytest.approx(0.05)
    assert f1["F1"]["comparison"] == "linear SVM with 6 shadows minus the best other pair (lr, 4 shadows)"
    assert "F1b" not in f1  # no RBF SVM in these results

    def comparable(gap: float) -> dict[str, Any]:
        both = {cell(am=am, n=n): [0.6 + 0.01 * s + (gap if am == "rbf-svm" else 0.0) for s in seeds]
                for am in ("rbf-svm", "linear-svm") for n in (4, 6)}  # fmt: skip
        return one(rows_from("1", both), "F1b")

    m = MARGIN["F1b"]
    assert comparable(m - 1e-4)["verdict"] == "supported"
    assert comparable(m + 1e-4)["verdict"] == "contradicted"
    assert comparable(0.0)["comparison"] == f"RBF SVM minus linear SVM, mean over shadow counts (margin ±{m:g})"

    mism = {cell(a=a, sa=sa): [(0.6 if a == sa else 0.5) + 0.01 * s for s in seeds]
            for a in ("simple", "dense") for sa in ("simple", "dense")}  # fmt: skip
    f6 = one(rows_from("6", mism), "F6")
    assert f6["verdict"] == "supported" and f6["difference"] == pytest.approx(-0.1)


def test_margins_are_declared_per_finding() -> None:
    assert [f.id for f in FINDINGS] == ["F1", "F1b", "F2", "F3", "F4", "F5a", "F5b", "F6"]
    assert all(0 < f.margin <= 0.02 for f in FINDINGS)
    assert {f.id: f.direction for f in FINDINGS} == {
        "F1": 1, "F1b": 0, "F2": 1, "F3": -1, "F4": -1, "F5a": 1, "F5b": -1, "F6": -1}  # fmt: skip


def test_missing_studies_are_left_out() -> None:
    assert compute_findings([]) == []
    assert np.isnan(verdict([math.inf, math.nan], direction=1, margin=0.01)["difference"])


def test_network_comparisons_show_each_targets_accuracies_and_gap() -> None:
    level = {"simple": 0.55, "dense": 0.63, "dropout": 0.57}
    acc = {"simple": (0.94, 0.83), "dense": (0.99, 0.82), "dropout": (0.91, 0.83)}
    rows = rows_from("5", {cell(n=n, a=a): [level[a] + 0.01 * s for s in range(3)] for n in (2, 3) for a in level})
    for a, (train, test) in acc.items():
        for s in range(3):
            for metric, value in (("target_train_accuracy", train + 0.001 * s), ("target_test_accuracy", test)):
                rows.append(dict(study="5", seed=s, attack_model="linear-svm", n_shadows=2, target_size=3000,
                                 classes=10, arch=a, shadow_arch=a, metric=metric, value=value))  # fmt: skip
    # another attack's targets do not count
    rows.append(dict(study="5", seed=0, attack="loss", attack_model="linear-svm", n_shadows=2, target_size=3000,
                     classes=10, arch="dense", shadow_arch="dense", metric="target_train_accuracy",
                     value=0.0))  # fmt: skip
    f5 = {f["id"]: f for f in compute_findings(rows)}
    dense = f5["F5a"]["targets"]["dense"]
    assert dense["train_accuracy"] == pytest.approx(0.991) and dense["test_accuracy"] == pytest.approx(0.82)
    assert dense["gap"] == pytest.approx(0.171)
    assert set(f5["F5a"]["targets"]) == {"dense", "simple"} and set(f5["F5b"]["targets"]) == {"dropout", "dense"}
    assert f5["F5a"]["sentence"].endswith(
        "targets' train/test accuracy (gap): dense 0.991/0.820 (0.171), simple 0.941/0.830 (0.111)"
    )
    assert "targets" not in one(size_rows([0.05, 0.06, 0.07]), "F3")
