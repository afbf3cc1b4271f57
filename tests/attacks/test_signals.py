"""The maths of the modern attacks, against hand-computed cases and textbook formulas."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from miaudit.attacks import signals
from miaudit.attacks.signals import (
    complement,
    confidence,
    cross_entropy,
    entropy,
    gaussian_logpdf,
    in_out_statistics,
    lira_offline_score,
    lira_online_score,
    logit_confidence,
    logit_confidence_from_logits,
    modified_entropy,
    out_statistics,
    pooled_std,
    rmia_offline_pr,
    rmia_offline_score,
    rmia_ratio,
    rmia_scores,
)
from miaudit.errors import DataError


def test_doctests_hold() -> None:
    result = doctest.testmod(signals, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


@pytest.fixture(scope="module")
def probs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.full(5, 0.4), size=200)
    y = rng.integers(0, 5, size=200)
    return P, y


def test_threshold_signals_match_their_textbook_formulas(probs) -> None:
    P, y = probs
    p = P[np.arange(len(y)), y]
    np.testing.assert_allclose(cross_entropy(P, y), -np.log(p), rtol=1e-12)
    np.testing.assert_allclose(confidence(P, y), p)
    np.testing.assert_allclose(entropy(P), stats.entropy(P, axis=1), rtol=1e-12)
    # Song & Mittal: Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    expected = []
    for row, label in zip(P, y, strict=True):
        value = -(1 - row[label]) * np.log(row[label])
        value -= sum(row[i] * np.log(1 - row[i]) for i in range(5) if i != label)
        expected.append(value)
    np.testing.assert_allclose(modified_entropy(P, y), expected, rtol=1e-10)
    np.testing.assert_allclose(complement(P), 1 - P, atol=1e-15)


def test_confident_records_stay_ordered() -> None:
    # p_y within 1e-17 of 1 rounds to 1.0: subtraction would give loss 0 and phi = inf for both rows
    P = np.array([[1.0, 1e-20, 0.0], [1.0, 1e-18, 1e-18]])
    y = np.array([0, 0])
    loss = cross_entropy(P, y)
    assert 0 < loss[0] < loss[1]
    phi = logit_confidence(P, y)
    np.testing.assert_allclose(phi, [20 * np.log(10), np.log(1 / 2e-18)])
    assert 0 < modified_entropy(P, y)[0] < modified_entropy(P, y)[1]
    assert 0 < entropy(P)[0] < entropy(P)[1]


def test_logit_confidence_from_probabilities_equals_from_logits() -> None:
    rng = np.random.default_rng(1)
    Z = rng.normal(scale=8.0, size=(300, 10))
    y = rng.integers(0, 10, size=300)
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(logit_confidence(P, y), logit_confidence_from_logits(Z, y), rtol=1e-9, atol=1e-9)
    # the definition: log p_y - log(1 - p_y)
    p = P[np.arange(300), y]
    np.testing.assert_allclose(logit_confidence(P, y), np.log(p) - np.log1p(-p), rtol=1e-7, atol=1e-9)


def test_signal_input_validation() -> None:
    with pytest.raises(DataError, match=r"P must have shape \(n_samples, n_classes\)"):
        entropy(np.ones(3))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\]; got range \[0, 2\]"):
        cross_entropy(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(DataError, match=r"y must have shape \(2,\)"):
        logit_confidence(np.full((2, 2), 0.5), np.array([0]))


def test_gaussian_logpdf_is_scipys() -> None:
    x = np.linspace(-3, 5, 17)
    np.testing.assert_allclose(gaussian_logpdf(x, 1.0, 2.5), stats.norm.logpdf(x, 1.0, 2.5), rtol=1e-12)


# ----------------------------------------------------------------------------- LiRA, by hand
# Four reference models, two records. Record 0 is IN for models 0 and 1 (phi 2 and 4) and OUT for
# 2 and 3 (phi 0 and 1); record 1 is IN for models 2 and 3 (phi 5 and 5.5), OUT for 0 and 1 (phi 1, 3).
PHI_REF = np.array([[2.0, 1.0], [4.0, 3.0], [0.0, 5.0], [1.0, 5.5]])
KEEP = np.array([[True, False], [True, False], [False, True], [False, True]])


def test_lira_online_gaussian_fits_and_score_by_hand() -> None:
    mu_in, s_in, mu_out, s_out = in_out_statistics(PHI_REF, KEEP, fix_variance=False)
    # means: IN (2+4)/2 = 3, (5+5.5)/2 = 5.25; OUT (0+1)/2 = 0.5, (1+3)/2 = 2
    np.testing.assert_allclose(mu_in, [3.0, 5.25])
    np.testing.assert_allclose(mu_out, [0.5, 2.0])
    # unbiased std of two values a, b: |a - b| / sqrt(2)
    np.testing.assert_allclose(s_in, [2 / math.sqrt(2), 0.5 / math.sqrt(2)])
    np.testing.assert_allclose(s_out, [1 / math.sqrt(2), 2 / math.sqrt(2)])
    # record 0, target phi = 3.5:
    #   log N(3.5; 3, 2)   = -0.5 log(2 pi) - log(sqrt 2)   - 0.25 / (2 * 2)  = -1.3280121
    #   log N(3.5; 0.5, .5) = -0.5 log(2 pi) - log(sqrt .5) - 9 / (2 * 0.5)   = -9.5723649
    score = lira_online_score(np.array([3.5]), mu_in[:1], s_in[:1], mu_out[:1], s_out[:1])
    assert score[0] == pytest.approx(-1.3280121 + 9.5723649, abs=1e-6)


def test_lira_global_variance_is_pooled_within_records() -> None:
    _, s_in, _, s_out = in_out_statistics(PHI_REF, KEEP, fix_variance=True)
    # IN deviations from each record's mean: (+-1)^2 twice, (+-0.25)^2 twice; 2 degrees of freedom
    np.testing.assert_allclose(s_in, math.sqrt((1 + 1 + 0.0625 + 0.0625) / 2))
    # OUT: (+-0.5)^2 twice, (+-1)^2 twice
    np.testing.assert_allclose(s_out, math.sqrt((0.25 + 0.25 + 1 + 1) / 2))
    with pytest.raises(DataError, match="at least 2 values"):
        pooled_std(PHI_REF[:2], KEEP[:2] & False | np.eye(2, dtype=bool))


def test_lira_offline_score_by_hand() -> None:
    mu, sd = out_statistics(PHI_REF[2:, :1])  # record 0's OUT values 0 and 1
    assert (mu[0], sd[0]) == pytest.approx((0.5, 1 / math.sqrt(2)))
    # Pr[Z > 2] for Z ~ N(0.5, 0.5) = erfc(z / sqrt 2) / 2 with z = 1.5 / sqrt(0.5)
    z = 1.5 / math.sqrt(0.5)
    expected = -math.log(0.5 * math.erfc(z / math.sqrt(2)))
    assert lira_offline_score(np.array([2.0]), mu, sd)[0] == pytest.approx(expected, rel=1e-10)
    # higher confidence, higher score; far in the tail it does not saturate
    s = lira_offline_score(np.array([0.0, 2.0, 40.0, 60.0]), 0.0, 1.0)
    assert np.all(np.diff(s) > 0) and np.isfinite(s).all()
    _, fixed = out_statistics(PHI_REF, global_std=0.25)
    np.testing.assert_allclose(fixed, 0.25)


def test_records_without_models_in_a_group_are_reported() -> None:
    with pytest.raises(DataError, match="1 records have no reference model in this group"):
        in_out_statistics(PHI_REF, np.array([[True, False]] * 4), fix_variance=False)


# ----------------------------------------------------------------------------- RMIA, by hand
def test_rmia_score_by_hand() -> None:
    a = 0.5
    p_x, mean_out_x = np.array([0.9, 0.2]), np.array([0.5, 0.4])
    p_z, mean_out_z = np.array([0.5, 0.6, 0.1]), np.array([0.5, 0.2, 0.3])
    # Pr(x) = ((1 + a) mean_out + (1 - a)) / 2
    np.testing.assert_allclose(rmia_offline_pr(mean_out_x, a), [0.625, 0.55])
    np.testing.assert_allclose(rmia_offline_pr(mean_out_z, a), [0.625, 0.4, 0.475])
    # ratios: x 0.9/0.625 = 1.44, 0.2/0.55 = 0.3636; z 0.8, 1.5, 0.2105
    np.testing.assert_allclose(rmia_ratio(p_x, mean_out_x, a), [1.44, 0.2 / 0.55])
    np.testing.assert_allclose(rmia_ratio(p_z, mean_out_z, a), [0.8, 1.5, 0.1 / 0.475])
    # score = fraction of z with ratio_x / ratio_z > gamma: x0 beats 0.8 and 0.2105, x1 beats 0.2105
    np.testing.assert_allclose(rmia_offline_score(p_x, mean_out_x, p_z, mean_out_z, a=a), [2 / 3, 1 / 3])
    # gamma = 2: x0 only beats 0.2105 (1.44 / 0.8 = 1.8 < 2); x1 beats none (0.3636 / 0.2105 = 1.73)
    np.testing.assert_allclose(rmia_offline_score(p_x, mean_out_x, p_z, mean_out_z, a=a, gamma=2.0), [1 / 3, 0])


def test_rmia_scores_equal_the_pairwise_definition() -> None:
    rng = np.random.default_rng(2)
    rx, rz = rng.exponential(size=50), rng.exponential(size=80)
    rz[:5] = 0.0  # z the target gives probability 0: every x with ratio > 0 beats them
    for gamma in (0.5, 1.0, 3.0):
        brute = np.mean(rx[:, None] / np.where(rz > 0, rz, 1e-300)[None, :] > gamma, axis=1)
        np.testing.assert_allclose(rmia_scores(rx, rz, gamma=gamma), brute)


def test_rmia_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"a must be in \[0, 1\]; got 1.5"):
        rmia_offline_pr(np.ones(2), 1.5)
    with pytest.raises(ValueError, match="gamma must be > 0; got 0"):
        rmia_scores(np.ones(2), np.ones(2), gamma=0)
    with pytest.raises(DataError, match="at least one population record"):
        rmia_scores(np.ones(2), np.ones(0))


# ------------------------------------------------------------------------------- thresholds, AUC
def test_attacks_tune_with_the_metrics_functions() -> None:
    """One AUC and one best-threshold search: the attacks use miaudit.metrics, signals has no copies."""
    import ast
    from pathlib import Path

    import miaudit.attacks as attacks_pkg

    assert not hasattr(signals, "rank_auc") and not hasattr(signals, "balanced_threshold")
    folder = Path(attacks_pkg.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not names & {"rank_auc", "auc", "balanced_threshold", "best_threshold"}, path.name
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert "rankdata" not in imported, f"{path.name} ranks scores itself; use miaudit.metrics.auc"
