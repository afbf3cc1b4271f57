"""Output policies: exact answers on hand-made arrays, the predicted label kept, seeded noise, validation."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.errors import ConfigError, DataError
from miaudit.targets.base import BlackBox
from miaudit.targets.policies import (
    POLICY_KINDS,
    OutputPolicy,
    PolicyTarget,
    label_only,
    noisy,
    record_keys,
    round_probabilities,
    top_k,
    with_temperature,
)

P = np.array(
    [
        [0.1, 0.6, 0.3],
        [0.25, 0.25, 0.5],
        [0.4, 0.4, 0.2],  # a tie for the top class
        [0.333, 0.334, 0.333],
    ]
)


def _random_probs(n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.3), size=n)


# ---------------------------------------------------------------------------- exact answers
def test_top_k_keeps_k_largest_without_renormalising() -> None:
    out = top_k(P, k=2)
    np.testing.assert_array_equal(
        out, [[0.0, 0.6, 0.3], [0.25, 0.0, 0.5], [0.4, 0.4, 0.0], [0.333, 0.334, 0.0]]
    )  # [0.25, 0.25] tie and [0.333, 0.333] tie: the lower class index is kept
    np.testing.assert_allclose(out.sum(axis=1), [0.9, 0.75, 0.8, 0.667])
    np.testing.assert_array_equal(top_k(P, k=1), [[0, 0.6, 0], [0, 0, 0.5], [0.4, 0, 0], [0, 0.334, 0]])
    np.testing.assert_array_equal(top_k(P, k=3), P)


def test_rounding_exact_and_rows_may_not_sum_to_one() -> None:
    out = round_probabilities(P, decimals=1)
    np.testing.assert_allclose(out, [[0.1, 0.6, 0.3], [0.2, 0.2, 0.5], [0.4, 0.4, 0.2], [0.3, 0.3, 0.3]])
    assert out[3].sum() == pytest.approx(0.9)  # what a rounded answer looks like
    np.testing.assert_allclose(round_probabilities(np.array([[0.123, 0.456, 0.421]]), decimals=2), [[0.12, 0.46, 0.42]])


def test_temperature_exact() -> None:
    out = with_temperature(np.array([[0.8, 0.2, 0.0]]), temperature=2.0)
    np.testing.assert_allclose(out, [[2 / 3, 1 / 3, 0.0]])  # sqrt(0.8) : sqrt(0.2) = 2 : 1; zeros stay 0
    np.testing.assert_allclose(with_temperature(P, temperature=1.0), P / P.sum(axis=1, keepdims=True))
    sharp = with_temperature(np.array([[0.6, 0.4]]), temperature=0.5)
    np.testing.assert_allclose(sharp, [[0.36 / 0.52, 0.16 / 0.52]])


def test_label_only_one_hot_of_argmax() -> None:
    np.testing.assert_array_equal(label_only(P), [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_full_is_identity_copy() -> None:
    out = OutputPolicy().apply(P)
    np.testing.assert_array_equal(out, P)
    assert out is not P


@pytest.mark.parametrize(
    "policy",
    [
        OutputPolicy("top_k", k=1),
        OutputPolicy("top_k", k=3),
        OutputPolicy("rounding", decimals=3),
        OutputPolicy("temperature", temperature=5.0),
        OutputPolicy("temperature", temperature=0.2),
        OutputPolicy("label_only"),
    ],
    ids=lambda p: p.to_string(),
)
def test_predicted_label_never_changes(policy: OutputPolicy) -> None:
    Q = _random_probs(2000, 10, seed=1)
    before = Q.argmax(axis=1)
    after = policy.apply(Q).argmax(axis=1)
    if policy.kind == "rounding":  # rounding may create ties: compare where the rounded top is unique
        R = policy.apply(Q)
        unique_top = (R.max(axis=1, keepdims=True) == R).sum(axis=1) == 1
        assert unique_top.mean() > 0.99
        np.testing.assert_array_equal(after[unique_top], before[unique_top])
    else:
        np.testing.assert_array_equal(after, before)


def test_rounding_tie_can_change_label() -> None:
    """The documented exception: two classes within the rounding step become tied."""
    Q = np.array([[0.41, 0.44, 0.15]])
    assert Q.argmax() == 1 and round_probabilities(Q, decimals=1).argmax() == 0


# ---------------------------------------------------------------------------- noise
def test_noise_same_record_same_answer_and_rows_sum_to_one() -> None:
    policy = OutputPolicy("noise", noise_scale=0.1, seed=3)
    X = np.random.default_rng(0).random((50, 8))
    Q = _random_probs(50, 4, seed=2)
    a = policy.apply(Q, rng_key=X)
    b = policy.apply(Q[::-1], rng_key=X[::-1])[::-1]  # other order, other batch: the same answers
    np.testing.assert_array_equal(a, b)
    c = policy.apply(np.r_[Q[:5], Q[:5]], rng_key=np.r_[X[:5], X[:5]])  # repeated query inside one batch
    np.testing.assert_array_equal(c[:5], c[5:])
    np.testing.assert_array_equal(c[:5], a[:5])
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert (a >= 0).all()
    assert np.abs(a - Q).mean() > 0.02  # the noise is really there


def test_noise_depends_on_seed_and_record() -> None:
    X = np.random.default_rng(0).random((20, 8))
    Q = _random_probs(20, 4, seed=2)
    a = OutputPolicy("noise", noise_scale=0.1, seed=0).apply(Q, rng_key=X)
    b = OutputPolicy("noise", noise_scale=0.1, seed=1).apply(Q, rng_key=X)
    c = OutputPolicy("noise", noise_scale=0.1, seed=0).apply(Q, rng_key=X + 1e-6)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    # the key is the record's values, not its dtype's bytes
    np.testing.assert_array_equal(record_keys(X.astype(np.float32), seed=0), record_keys(X.astype(np.float32), seed=0))
    np.testing.assert_array_equal(record_keys(np.array([[0, 1]]), seed=0), record_keys(np.array([[0.0, 1.0]]), seed=0))


@pytest.mark.parametrize(("distribution", "std"), [("laplace", np.sqrt(2) * 0.05), ("gaussian", 0.05)])
def test_noise_distribution_has_its_scale(distribution: str, std: float) -> None:
    """Before clipping, the noise has the documented spread: checked on a centred row that never clips."""
    Q = np.full((20000, 2), 0.5)
    keys = record_keys(np.arange(20000.0)[:, None], seed=0)
    out = noisy(Q, scale=0.05, keys=keys, distribution=distribution)
    # with both entries near 0.5 nothing clips; renormalising maps noise (e0, e1) to about (e0 - e1) / 2
    diff = out[:, 0] - 0.5
    assert np.std(diff) == pytest.approx(std / np.sqrt(2), rel=0.05)
    assert abs(np.mean(diff)) < 0.002


def test_noise_all_clipped_row_answers_one_hot() -> None:
    Q = np.array([[0.0, 0.0, 1.0]])
    keys = record_keys(np.arange(400.0)[:, None], seed=0)
    out = noisy(np.repeat(Q, 400, axis=0), scale=5.0, keys=keys)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert ((out == 1.0).sum(axis=1) == 1).sum() > 10  # some rows were clipped entirely


def test_noise_without_records_is_keyed_by_the_answer() -> None:
    policy = OutputPolicy("noise", noise_scale=0.2)
    np.testing.assert_array_equal(policy.apply(P), policy.apply(P))


def test_noisy_key_errors() -> None:
    with pytest.raises(DataError, match=r"keys must be a uint64 ndarray of shape \(4,\)"):
        noisy(P, scale=0.1, keys=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match="rng_key must have one row per answer"):
        OutputPolicy("noise", noise_scale=0.1).apply(P, rng_key=np.zeros((3, 2)))
    with pytest.raises(DataError, match="one row per record"):
        record_keys(np.float64(1.0), seed=0)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "topk"}, "the output policy must be one of"),
        ({"kind": "top_k"}, "the top_k policy needs k"),
        ({"kind": "top_k", "k": 0}, "k must be an integer >= 1"),
        ({"kind": "top_k", "k": 2.0}, "k must be an integer >= 1"),
        ({"kind": "top_k", "k": True}, "k must be an integer >= 1"),
        ({"kind": "rounding", "decimals": 0}, "decimals must be an integer from 1 to 15"),
        ({"kind": "temperature", "temperature": 0.0}, "temperature must be a finite number > 0"),
        ({"kind": "temperature", "temperature": float("inf")}, "temperature must be a finite number > 0"),
        ({"kind": "noise", "noise_scale": -1.0}, "noise_scale must be a finite number > 0"),
        ({"kind": "noise", "noise_scale": 0.1, "distribution": "cauchy"}, "distribution must be one of"),
        ({"kind": "label_only", "k": 3}, "k=3 does not apply to the label_only policy"),
        ({"kind": "top_k", "k": 3, "decimals": 2}, r"decimals=2 does not apply to the top_k policy.*takes k"),
        ({"kind": "full", "seed": -1}, "seed must be an integer"),
    ],
)
def test_bad_policy_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OutputPolicy(**kwargs)


def test_bad_function_arguments() -> None:
    with pytest.raises(ConfigError, match=r"k=4 exceeds the 3 classes"):
        top_k(P, k=4)
    with pytest.raises(ConfigError, match="decimals must be"):
        round_probabilities(P, decimals=-1)
    with pytest.raises(ConfigError, match="temperature must be"):
        with_temperature(P, temperature=-2)
    with pytest.raises(ConfigError, match="noise_scale must be"):
        noisy(P, scale=0.0, keys=np.zeros(4, dtype=np.uint64))
    with pytest.raises(DataError, match=r"shape \(n_samples, n_classes\)"):
        label_only(np.array([0.5, 0.5]))
    with pytest.raises(DataError, match="NaN or infinite"):
        top_k(np.array([[np.nan, 1.0]]), k=1)
    with pytest.raises(DataError, match="non-negative probabilities"):
        with_temperature(np.array([[-0.1, 1.1]]), temperature=2)


# ---------------------------------------------------------------------------- strings and dicts
@pytest.mark.parametrize(
    "text", ["full", "label_only", "top_k:3", "rounding:2", "temperature:4.0", "noise:0.1", "noise:0.1:gaussian"]
)
def test_from_string_round_trip(text: str) -> None:
    policy = OutputPolicy.from_string(text)
    assert policy.to_string() == text
    assert OutputPolicy.from_string(policy.to_string()) == policy
    assert OutputPolicy(**policy.to_dict()) == policy


def test_from_string_values_and_seed() -> None:
    assert OutputPolicy.from_string(" top_k : 3 ") == OutputPolicy("top_k", k=3)
    assert OutputPolicy.from_string("temperature:4") == OutputPolicy("temperature", temperature=4.0)
    assert OutputPolicy.from_string("noise:0.1", seed=7) == OutputPolicy("noise", noise_scale=0.1, seed=7)
    assert OutputPolicy.from_string("noise:0.1:gaussian").distribution == "gaussian"
    assert set(POLICY_KINDS) == {"full", "top_k", "rounding", "temperature", "label_only", "noise"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("top3", "the output policy must be one of"),
        ("top_k", r"the top_k policy needs a value: write 'top_k:3'"),
        ("top_k:three", r"cannot read 'three' in output policy 'top_k:three'"),
        ("top_k:3:4", "too many ':' parts"),
        ("label_only:1", "too many ':' parts"),
        ("noise:0.1:gaussian:2", "too many ':' parts"),
        ("rounding:0", "decimals must be an integer from 1 to 15"),
        ("noise:0.1:uniform", "distribution must be one of"),
    ],
)
def test_from_string_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OutputPolicy.from_string(text)


def test_from_string_needs_a_string() -> None:
    with pytest.raises(ConfigError, match="written as a string"):
        OutputPolicy.from_string(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the wrapper
class _Fixed(BlackBox):
    """Answers P[i] for the record whose first feature is i."""

    def __init__(self) -> None:
        super().__init__(n_features=2, n_classes=3)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return P[X[:, 0].astype(int)]


@pytest.mark.parametrize(
    ("policy", "kind"),
    [
        ("full", "rounded"),  # the hand-made P lies on a 3-decimal grid
        ("label_only", "labels"),
        ("temperature:3", "probabilities"),
        ("noise:0.05", "probabilities"),
        ("top_k:2", "top_k"),
        ("rounding:1", "rounded"),
    ],
)
def test_policy_target_answers_with_policy_and_counts(policy: str, kind: str) -> None:
    """Every policy's answers pass the black box's checks, and it recognises the defended kinds."""
    inner = _Fixed()
    target = PolicyTarget(inner, policy)
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    out = target.predict_proba(X)
    np.testing.assert_allclose(out, OutputPolicy.from_string(policy).apply(P, rng_key=X), atol=1e-12)
    assert target.answers_ is not None and target.answers_.kind == kind
    assert target.name == f"_Fixed ({OutputPolicy.from_string(policy).to_string()})"
    target.predict_proba(X[:2])
    assert (target.n_queries, target.n_calls) == (6, 2)
    assert (inner.n_queries, inner.n_calls) == (6, 2)
    np.testing.assert_array_equal(target.predict_proba(X[:2]), out[:2])  # same records, same answers


def test_policy_target_wraps_plain_targets_and_validates() -> None:
    class Plain:
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return np.tile([0.2, 0.8], (len(X), 1))

    target = PolicyTarget(Plain(), OutputPolicy("label_only"), n_features=3, n_classes=2)
    np.testing.assert_array_equal(target.predict_proba(np.zeros((2, 3))), [[0, 1], [0, 1]])
    assert "label_only" in repr(target)
    with pytest.raises(ConfigError, match="needs n_features and n_classes"):
        PolicyTarget(Plain(), "label_only")
    with pytest.raises(ConfigError, match="needs a predict_proba"):
        PolicyTarget(object(), "full", n_features=3, n_classes=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy must be an OutputPolicy"):
        PolicyTarget(Plain(), 3, n_features=3, n_classes=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"k=5 exceeds the 2 classes"):
        PolicyTarget(Plain(), "top_k:5", n_features=3, n_classes=2)
    with pytest.raises(DataError, match=r"queries must have shape \(n_samples, 3\)"):
        target.predict_proba(np.zeros((2, 4)))
