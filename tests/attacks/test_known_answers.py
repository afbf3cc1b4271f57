"""Known answers on the shared memorising target: every attack beats the next weaker attack.

An absolute floor (``auc > 0.65``) passes when an attack silently degrades to a weaker one: on this
target a plain loss threshold already reaches AUC 0.67. So each test here computes the weaker
attack's numbers on the same records, in the same test, and asserts the gap, on the metrics that
define the attack (LiRA and RMIA: TPR at 1% and 0.1% FPR, not only AUC), all from
:mod:`miaudit.metrics`.

The target memorises 300 Fashion-MNIST images (``memorising_target`` in ``tests/conftest.py``). Every
attack scores the same 1,200 records: the 300 members, then the 900 held-out non-members. With 900
non-members, 1% FPR allows 9 false positives and 0.1% allows none. Measured ladder (training in bf16
and in f32 gives the same to about 0.01; AUC / TPR at 1% / TPR at 0.1%):

=======================================  =====  =====  =====
label-only gap (correct = member)        0.61   0.00   0.00
top-1 probability (label-free)           0.65   0.01   0.00
loss = confidence, global threshold      0.67   0.01   0.00
confidence, per-class thresholds         0.68   0.01   0.00
ML-Leaks (one shadow, top-3)             0.69   0.04   0.00
Shokri (3 shadows, linear SVM, global)   0.72   0.02   0.00
Shokri, raw vectors, per-class models    0.73   0.00   0.00
LiRA offline (8 references)              0.71   0.09   0.02
RMIA (8 references, 5,000 z)             0.79   0.14   0.03
LiRA online (8 references)               0.81   0.19   0.04
LiRA online, 4 calls of 300 (padded)     0.79   0.19   0.08
=======================================  =====  =====  =====

Margins below are about half the measured gaps, so an attack that falls back to the weaker one
(gap 0) fails, while the other precision still passes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest

import miaudit.attacks.lira as lira_module
from miaudit.attacks import (
    LiRAAttack,
    LiRAOfflineAttack,
    MLLeaksAttack,
    RMIAAttack,
    ShadowData,
    ShadowModelAttack,
    create_attack,
    train_shadows,
)
from miaudit.attacks.rmia import A_GRID
from miaudit.metrics import auc, balanced_accuracy, roc_curve, tpr_at_fpr
from miaudit.targets import LocalTarget

N_IN, N_OUT = 300, 900
IS_MEMBER = np.r_[np.ones(N_IN, bool), np.zeros(N_OUT, bool)]


@dataclass(frozen=True)
class Numbers:
    """An attack's numbers on the 1,200 records."""

    auc: float
    tpr1: float  # TPR at 1% FPR
    tpr01: float  # TPR at 0.1% FPR (no false positive among 900 non-members)
    null_auc: float  # AUC of one half of the non-members against the other: chance, 0.5

    def __str__(self) -> str:
        return f"AUC {self.auc:.3f}, TPR@1% {self.tpr1:.3f}, TPR@0.1% {self.tpr01:.3f}"


def numbers(scores: np.ndarray) -> Numbers:
    """AUC and TPR at fixed FPR of ``scores`` (ndarray of shape (1200,), members first)."""
    assert scores.shape == IS_MEMBER.shape and np.isfinite(scores).all()
    out = scores[N_IN:]
    half = np.r_[np.ones(N_OUT // 2, bool), np.zeros(N_OUT - N_OUT // 2, bool)]
    return Numbers(
        auc=auc(IS_MEMBER, scores),
        tpr1=float(tpr_at_fpr(IS_MEMBER, scores, 0.01)),
        tpr01=float(tpr_at_fpr(IS_MEMBER, scores, 0.001)),
        null_auc=auc(half, out),
    )


def assert_beats(
    name: str,
    strong: Numbers,
    weak_name: str,
    weak: Numbers,
    *,
    auc_by: float | None = None,
    tpr1_by: float | None = None,
    tpr01_by: float | None = None,
) -> None:
    """``strong`` exceeds ``weak`` by at least the given margins (a margin of 0 means strictly above)."""
    for metric, margin in (("auc", auc_by), ("tpr1", tpr1_by), ("tpr01", tpr01_by)):
        if margin is None:
            continue
        s, w = getattr(strong, metric), getattr(weak, metric)
        ok = s > w if margin == 0 else s >= w + margin
        assert ok, f"{name} ({strong}) does not beat {weak_name} ({weak}) on {metric} by {margin}"


def best_balanced_accuracy(signal: np.ndarray) -> float:
    """The best balanced accuracy of any single threshold on ``signal`` (an oracle that sees membership)."""
    fpr, tpr, _ = roc_curve(IS_MEMBER, signal)
    return float(np.max((tpr + 1 - fpr) / 2))


# ------------------------------------------------------------------------------------------ fixtures
@dataclass(frozen=True)
class Evaluation:
    X: np.ndarray  # (1200, 784): members, then non-members
    y: np.ndarray  # (1200,)
    P: np.ndarray  # (1200, 10): the target's probabilities
    target: object  # the memorising MLPParams
    knowledge: object  # AttackerKnowledge


@pytest.fixture(scope="module")
def evaluation(memorising_target) -> Evaluation:
    ds, split, target, knowledge = memorising_target
    assert len(split.target_in) == N_IN and len(split.target_out) == N_OUT
    idx = np.concatenate([split.target_in, split.target_out])
    X, y = ds.X[idx], ds.y[idx]
    return Evaluation(X=X, y=y, P=target.predict_proba(X), target=target, knowledge=knowledge)


@pytest.fixture(scope="module")
def baselines(evaluation: Evaluation) -> dict[str, np.ndarray]:
    """The weak attacks, computed here with numpy from the target's outputs (no attack code)."""
    P, y = evaluation.P, evaluation.y
    p_true = P[np.arange(len(y)), y]
    return {
        "gap": (P.argmax(axis=1) == y).astype(np.float64),  # label-only: correctly classified = member
        "top-1 probability": P.max(axis=1),  # label-free confidence
        "loss": np.log(np.maximum(p_true, 1e-300)),  # minus the cross-entropy: higher = member
    }


@pytest.fixture(scope="module")
def shadows(evaluation: Evaluation) -> ShadowData:
    """Three shadows of 300 + 300 records from the attacker's population (thresholds use the first two)."""
    return train_shadows(evaluation.knowledge, n_shadows=3, train_size=300, test_size=300, seed=3)


@pytest.fixture(scope="module")
def lira_offline(evaluation: Evaluation) -> dict[bool, tuple[LiRAOfflineAttack, np.ndarray]]:
    """Offline LiRA with a global and with per-record variances: (fitted attack, scores)."""
    out = {}
    for fix in (True, False):
        attack = LiRAOfflineAttack(n_refs=8, ref_train_size=300, fix_variance=fix, seed=3).fit(evaluation.knowledge)
        out[fix] = attack, attack.score(LocalTarget(evaluation.target), evaluation.X, evaluation.y)
    return out


# ------------------------------------------------------------------------------- threshold attacks
def test_loss_attack_beats_the_label_only_gap_attack(evaluation, baselines, shadows) -> None:
    attack = create_attack("loss").fit_shadow_data(shadows.first(2))
    assert attack.per_class_ is False
    scores = attack.score_outputs(evaluation.P, evaluation.y)
    got, loss, gap = numbers(scores), numbers(baselines["loss"]), numbers(baselines["gap"])
    # a global threshold only shifts the signal: the ranking is numpy's loss ranking
    assert abs(got.auc - loss.auc) < 1e-3, (got, loss)
    assert_beats("loss attack", got, "gap attack", gap, auc_by=0.03)
    assert abs(got.null_auc - 0.5) < 0.08
    # the shadow-calibrated threshold decides nearly as well as the best threshold on the target itself
    decided = balanced_accuracy(IS_MEMBER, scores >= attack.threshold_)
    assert decided >= best_balanced_accuracy(baselines["loss"]) - 0.03
    assert decided >= balanced_accuracy(IS_MEMBER, baselines["gap"] > 0.5) + 0.03


#: measured gap of per-class over global thresholds (bf16, f32): loss 0.053, 0.049; confidence 0.012, 0.013;
#: entropy 0.032, 0.036; modified entropy 0.056, 0.049
PER_CLASS_MARGIN = {"loss": 0.025, "confidence": 0.005, "entropy": 0.015, "modified-entropy": 0.025}


@pytest.mark.parametrize("name", list(PER_CLASS_MARGIN))
def test_per_class_thresholds_beat_one_global_threshold(evaluation, shadows, name: str) -> None:
    data = shadows.first(2)
    per_class = create_attack(name, per_class=True).fit_shadow_data(data)
    single = create_attack(name, per_class=False).fit_shadow_data(data)
    assert per_class.per_class_ and not single.per_class_
    assert len(np.unique(per_class.thresholds_)) == 10 and len(np.unique(single.thresholds_)) == 1
    s_pc = per_class.score_outputs(evaluation.P, evaluation.y)
    s_g = single.score_outputs(evaluation.P, evaluation.y)
    pc, g = numbers(s_pc), numbers(s_g)
    assert_beats(f"{name} per class", pc, f"{name} global", g, auc_by=PER_CLASS_MARGIN[name])
    assert abs(pc.null_auc - 0.5) < 0.08 and abs(g.null_auc - 0.5) < 0.08
    # both are the same signal, shifted by the threshold of the record's TRUE class
    np.testing.assert_allclose(s_pc - s_g, single.global_threshold_ - per_class.thresholds_[evaluation.y])
    # the hard decisions are calibrated: not worse than the global threshold's
    assert balanced_accuracy(IS_MEMBER, s_pc >= 0) >= balanced_accuracy(IS_MEMBER, s_g >= 0) - 0.01


# ------------------------------------------------------------------------------------------- Shokri
def test_shokri_beats_the_threshold_attacks(evaluation, baselines, shadows) -> None:
    attack = ShadowModelAttack(seed=0).fit_shadow_data(shadows)  # linear SVM on the rich features, global
    got = numbers(attack.score_outputs(evaluation.P, evaluation.y))
    confidence = create_attack("confidence").fit_shadow_data(shadows.first(2))  # per-class thresholds
    conf = numbers(confidence.score_outputs(evaluation.P, evaluation.y))
    assert_beats("Shokri", got, "loss", numbers(baselines["loss"]), auc_by=0.03)  # measured gap 0.05
    assert_beats("Shokri", got, "confidence per class", conf, auc_by=0.02)  # measured gap 0.04
    assert abs(got.null_auc - 0.5) < 0.08


def test_shokri_per_class_models_beat_one_model_on_raw_vectors(evaluation, shadows) -> None:
    """Shokri et al.'s design: the raw probability vector means something only within a class."""
    scores = {
        pc: ShadowModelAttack(attack_model="lr", features="raw", per_class=pc, seed=0)
        .fit_shadow_data(shadows)
        .score_outputs(evaluation.P, evaluation.y)
        for pc in (False, True)
    }
    pc, single = numbers(scores[True]), numbers(scores[False])
    assert_beats("per-class models", pc, "one model", single, auc_by=0.1)  # measured 0.73 vs 0.53
    assert abs(pc.null_auc - 0.5) < 0.08


def test_shokri_true_label_feature_ranks_like_the_loss(evaluation, baselines, shadows) -> None:
    """One feature, the logit of the TRUE class's probability: a monotone function of the loss.

    Built from the predicted class instead, it would rank like the top-1 probability, 0.016 lower.
    """
    attack = ShadowModelAttack(attack_model="lr", features="true-label", seed=0).fit_shadow_data(shadows)
    got = numbers(attack.score_outputs(evaluation.P, evaluation.y))
    loss, top1 = numbers(baselines["loss"]), numbers(baselines["top-1 probability"])
    assert abs(got.auc - loss.auc) < 1e-3
    assert abs(loss.auc - top1.auc) > 0.01  # so the check above tells the two features apart


# ---------------------------------------------------------------------------------------- ML-Leaks
def test_ml_leaks_beats_the_label_free_top_1_threshold(evaluation, baselines) -> None:
    attack = MLLeaksAttack(shadow_train_size=300, shadow_test_size=300, seed=3).fit(evaluation.knowledge)
    assert attack.n_training_records_ == 600  # one shadow: 300 in + 300 out
    box = LocalTarget(evaluation.target)
    got = numbers(attack.score(box, evaluation.X, evaluation.y))
    assert box.n_queries == 1200 == attack.n_queries_
    # measured 0.69 vs 0.65 (top-1) and 0.61 (gap); its top-3 sorted ascending instead gives 0.56
    assert_beats("ML-Leaks", got, "top-1 probability", numbers(baselines["top-1 probability"]), auc_by=0.015)
    assert_beats("ML-Leaks", got, "gap attack", numbers(baselines["gap"]), auc_by=0.05)
    assert abs(got.null_auc - 0.5) < 0.08


# -------------------------------------------------------------------------------------- LiRA online
@pytest.fixture(scope="module")
def lira_online(evaluation: Evaluation) -> dict[bool, Numbers]:
    """Online LiRA on all 1,200 records in one call (more than 2 x 300: no population padding)."""
    out = {}
    for fix in (True, False):
        box = LocalTarget(evaluation.target)
        attack = LiRAAttack(n_refs=8, ref_train_size=300, fix_variance=fix, seed=3).fit(evaluation.knowledge)
        scores = attack.score(box, evaluation.X, evaluation.y)
        assert attack.fix_variance_ is fix
        assert box.n_queries == 1200 == attack.n_queries_ and attack.n_models_trained_ == 8
        out[fix] = numbers(scores)
    return out


def test_online_lira_beats_offline_lira_and_the_loss_attack(lira_online, lira_offline, baselines) -> None:
    got = lira_online[True]
    assert_beats("online LiRA", got, "loss", numbers(baselines["loss"]), auc_by=0.1, tpr1_by=0.1, tpr01_by=0.02)
    offline = numbers(lira_offline[True][1])
    assert_beats("online LiRA", got, "offline LiRA", offline, auc_by=0.05, tpr1_by=0.04)
    assert abs(got.null_auc - 0.5) < 0.08


def test_online_lira_global_variance_beats_per_record_variance_with_few_models(lira_online, baselines) -> None:
    """With 8 models a per-record variance is noisy (the reason for the default); it still beats the loss."""
    fixed, per_record = lira_online[True], lira_online[False]
    assert_beats("global variance", fixed, "per-record variance", per_record, tpr1_by=0.05)  # 0.19 vs 0.06
    assert_beats("per-record LiRA", per_record, "loss", numbers(baselines["loss"]), auc_by=0.05, tpr1_by=0.02)
    assert abs(per_record.null_auc - 0.5) < 0.08


def test_online_lira_pads_few_records_with_aligned_population_records(
    evaluation, baselines, lira_online, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four calls of 300 records each (75 members + 225 non-members): each pool gets 300 population records.

    The reference statistics must stay aligned with the scored records: a record the references find
    hard is hard for the target too, so the target's signal and the OUT mean correlate (0.87 here; a
    misaligned pool gives about 0), and the attack keeps its lead over the loss attack.
    """
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original = lira_module.lira_online_score

    @functools.wraps(original)
    def spy(phi, mean_in, std_in, mean_out, std_out):
        seen.append((np.asarray(phi), np.asarray(mean_out)))
        return original(phi, mean_in, std_in, mean_out, std_out)

    monkeypatch.setattr(lira_module, "lira_online_score", spy)
    attack = LiRAAttack(n_refs=8, ref_train_size=300, seed=3).fit(evaluation.knowledge)
    box = LocalTarget(evaluation.target)
    chunks = [np.r_[np.arange(k * 75, (k + 1) * 75), N_IN + np.arange(k * 225, (k + 1) * 225)] for k in range(4)]
    scores = np.empty(N_IN + N_OUT)
    for chunk in chunks:
        scores[chunk] = attack.score(box, evaluation.X[chunk], evaluation.y[chunk])
    assert attack.n_models_trained_ == 32 and attack.n_queries_ == box.n_queries == 1200
    assert len(seen) == 4
    for chunk, (phi, mean_out) in zip(chunks, seen, strict=True):
        assert phi.shape == mean_out.shape == (300,)
        outs = ~IS_MEMBER[chunk]
        assert np.corrcoef(phi[outs], mean_out[outs])[0, 1] > 0.6
    got = numbers(scores)
    loss = numbers(baselines["loss"])
    assert_beats("padded online LiRA", got, "loss", loss, auc_by=0.1, tpr1_by=0.1, tpr01_by=0.02)
    assert got.auc >= lira_online[True].auc - 0.05  # padding costs little
    assert abs(got.null_auc - 0.5) < 0.08


# ------------------------------------------------------------------------------------- LiRA offline
@pytest.mark.parametrize("fix", [True, False], ids=["global-variance", "per-record-variance"])
def test_offline_lira_beats_the_loss_attack_at_low_fpr(evaluation, baselines, lira_offline, fix: bool) -> None:
    attack, scores = lira_offline[fix]
    assert attack.fix_variance_ is fix and (attack.global_std_ is not None) is fix and len(attack.models_) == 8
    got, loss = numbers(scores), numbers(baselines["loss"])
    # its degenerate form (no reference means) IS the loss ranking: the gap is at low FPR
    assert_beats("offline LiRA", got, "loss", loss, auc_by=0.025, tpr1_by=0.04, tpr01_by=0)
    assert abs(got.null_auc - 0.5) < 0.08
    # the pseudo-target stands in for the real target: its AUC and threshold carry over
    assert abs(attack.tuning_auc_ - got.auc) < 0.05
    decided = balanced_accuracy(IS_MEMBER, scores >= attack.threshold_)
    assert decided >= balanced_accuracy(IS_MEMBER, baselines["gap"] > 0.5) + 0.02


# --------------------------------------------------------------------------------------------- RMIA
@pytest.mark.parametrize(("n_refs", "z_size"), [(8, 5000), (1, 1000)])
def test_rmia_beats_the_confidence_attack_and_offline_lira(
    evaluation, baselines, lira_offline, n_refs: int, z_size: int
) -> None:
    """RMIA without its reference models is a confidence attack (TPR 0.01 at 1% FPR here)."""
    attack = RMIAAttack(n_refs=n_refs, ref_train_size=300, z_size=z_size, seed=3).fit(evaluation.knowledge)
    assert attack.a_ in A_GRID and set(attack.tuning_auc_) == set(A_GRID)
    assert attack.tuning_auc_[attack.a_] == max(attack.tuning_auc_.values())
    box = LocalTarget(evaluation.target)
    got = numbers(attack.score(box, evaluation.X, evaluation.y))
    assert box.n_queries == 1200 + z_size == attack.n_queries_  # the records and the population z
    confidence = numbers(baselines["loss"])  # p_y and the loss rank records alike
    offline = numbers(lira_offline[True][1])
    if n_refs == 8:  # measured AUC 0.79, TPR 0.14 at 1%, 0.03-0.05 at 0.1%
        assert_beats("RMIA", got, "confidence", confidence, auc_by=0.06, tpr1_by=0.05, tpr01_by=0)
        assert_beats("RMIA", got, "offline LiRA", offline, auc_by=0.03)
    else:  # one reference model: measured AUC 0.77, TPR 0.08 at 1%
        assert_beats("RMIA", got, "confidence", confidence, auc_by=0.05, tpr1_by=0.04)
        assert_beats("RMIA", got, "offline LiRA", offline, auc_by=0.02)
    assert abs(got.null_auc - 0.5) < 0.08
