from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.special import expit
from scipy.special import softmax as sp_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from miaudit.errors import ConfigError, DataError, TargetError
from miaudit.targets import (
    AnswerProfile,
    BlackBox,
    EstimatorTarget,
    LocalTarget,
    TorchModuleTarget,
    as_target,
    check_probabilities,
    describe_answers,
    detect_output_kind,
    profile_answers,
)
from miaudit.training.networks import MLPParams, build_module, params_from_module
from miaudit.training.specs import ModelSpec


def _model() -> MLPParams:
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    return params_from_module(build_module(spec), spec)


class Fixed(BlackBox):
    """A target that answers a fixed array, whatever it is asked."""

    def __init__(self, answer: np.ndarray, *, n_classes: int = 2) -> None:
        super().__init__(n_features=64, n_classes=n_classes, name="fixed model")
        self.answer = answer

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.answer


def _softmax_rows(n: int, c: int, seed: int) -> np.ndarray:
    return sp_softmax(np.random.default_rng(seed).normal(scale=2.0, size=(n, c)), axis=1)


def test_local_target_counts_queries(digits) -> None:
    X, _ = digits
    t = LocalTarget(_model())
    P = t.predict_proba(X[:30])
    assert P.shape == (30, 10)
    np.testing.assert_allclose(P.sum(1), 1.0)
    t.predict_proba(X[:5])
    assert (t.n_queries, t.n_calls) == (35, 2)
    assert t.answers_ is not None and t.answers_.kind == "probabilities"
    t.reset_counts()
    assert t.n_queries == 0


def test_estimator_and_module_wrappers(digits) -> None:
    X, y = digits
    est = LogisticRegression(max_iter=200).fit(X[:300], y[:300])
    t = as_target(est)
    assert isinstance(t, EstimatorTarget)
    assert t.classes == tuple(range(10)) and t.output_kind_ == "probabilities"
    np.testing.assert_allclose(t.predict_proba(X[:4]), est.predict_proba(X[:4]), rtol=0, atol=1e-12)
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    module = build_module(spec)
    tm = as_target(module, n_features=64, n_classes=10)
    np.testing.assert_allclose(
        tm.predict_proba(X[:4]), LocalTarget(params_from_module(module, spec)).predict_proba(X[:4]), atol=1e-6
    )
    with pytest.raises(ConfigError, match="needs a predict_proba"):
        as_target(object())
    with pytest.raises(ConfigError, match="needs n_classes, and n_features or input_shape"):
        as_target(module, n_features=64)


def test_local_target_refuses_other_models_with_the_way_to_wrap_them(digits) -> None:
    X, y = digits
    est = LogisticRegression(max_iter=50).fit(X[:100], y[:100])
    with pytest.raises(ConfigError, match=r"LocalTarget takes a model trained by miaudit.*got LogisticRegression"):
        LocalTarget(est)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"use as_target\(model\) or EstimatorTarget"):
        LocalTarget(est)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"TorchModuleTarget\(module, n_features=\.\.\., n_classes=\.\.\.\)"):
        LocalTarget(torch.nn.Linear(64, 10))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="TorchModuleTarget takes a torch.nn.Module; got LogisticRegression"):
        TorchModuleTarget(est, n_features=64, n_classes=10)
    with pytest.raises(ConfigError, match="not fitted"):
        EstimatorTarget(LogisticRegression(), n_features=64)
    with pytest.raises(ConfigError, match="neither predict_proba nor decision_function"):
        EstimatorTarget(object(), n_features=64)
    with pytest.raises(ConfigError, match="fitted on 64 features but n_features=10"):
        EstimatorTarget(est, n_features=10)


def test_estimator_without_predict_proba_uses_its_decision_scores(digits) -> None:
    X, y = digits
    multi = LinearSVC(max_iter=2000).fit(X[:400], y[:400])
    t = as_target(multi)
    assert isinstance(t, EstimatorTarget) and t.output_kind_ == "logits"
    np.testing.assert_allclose(t.predict_proba(X[:20]), sp_softmax(multi.decision_function(X[:20]), axis=1), atol=1e-12)
    binary = LinearSVC(max_iter=2000).fit(X[:400], (y[:400] > 4).astype(int))
    tb = as_target(binary)
    p1 = expit(binary.decision_function(X[:20]))
    np.testing.assert_allclose(tb.predict_proba(X[:20]), np.stack([1 - p1, p1], axis=1), atol=1e-12)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


def test_a_module_ending_in_softmax_is_not_softmaxed_twice(digits) -> None:
    X, _ = digits
    logits_module = _mlp(0)
    softmax_module = torch.nn.Sequential(logits_module, torch.nn.Softmax(dim=1))
    a = TorchModuleTarget(logits_module, n_features=64, n_classes=10)
    b = TorchModuleTarget(softmax_module, n_features=64, n_classes=10)
    assert a.output_kind_ is None and b.output_kind_ is None  # decided on the first batch
    Pa, Pb = a.predict_proba(X[:50]), b.predict_proba(X[:50])
    assert (a.output_kind_, b.output_kind_) == ("logits", "probabilities")
    np.testing.assert_allclose(Pa, Pb, rtol=0, atol=1e-6)
    with torch.no_grad():
        own = torch.softmax(logits_module(torch.as_tensor(X[:50])).double(), dim=1).numpy()
    np.testing.assert_allclose(Pa, own, rtol=0, atol=1e-12)
    # softmaxing probabilities again would flatten them: the double softmax is far from the truth
    assert np.abs(sp_softmax(Pb, axis=1) - own).max() > 0.05
    # the kind decided on the first batch stays for later batches
    b.predict_proba(X[50:60])
    assert b.output_kind_ == "probabilities"


def test_output_kind_given_explicitly(digits, caplog: pytest.LogCaptureFixture) -> None:
    X, _ = digits
    module = _mlp(1)
    wrong = TorchModuleTarget(module, n_features=64, n_classes=10, output_kind="probabilities", name="my mlp")
    with pytest.raises(TargetError, match=r"^my mlp: the model's outputs look like logits \(negative values"):
        wrong.predict_proba(X[:5])
    with pytest.raises(TargetError, match="pass --output-kind logits or wrap with a softmax"):
        wrong.predict_proba(X[:5])
    sm = TorchModuleTarget(
        torch.nn.Sequential(module, torch.nn.Softmax(dim=1)), n_features=64, n_classes=10, output_kind="logits"
    )
    with caplog.at_level(logging.WARNING, logger="miaudit.targets.outputs"):
        sm.predict_proba(X[:5])
    assert "look like probabilities" in caplog.text
    with pytest.raises(ConfigError, match="output_kind must be one of auto, probabilities, logits; got 'softmax'"):
        TorchModuleTarget(module, n_features=64, n_classes=10, output_kind="softmax")


def test_torch_target_reshapes_records_and_pads_a_fixed_batch(digits) -> None:
    X, _ = digits
    torch.manual_seed(2)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(192, 4))
    seen: list[int] = []
    cnn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    t = TorchModuleTarget(cnn, n_features=64, n_classes=4, input_shape=(1, 8, 8), fixed_batch_size=4)
    P = t.predict_proba(X[:10])
    assert seen == [4, 4, 4]  # 10 records: two full chunks and one padded
    with torch.no_grad():
        own = torch.softmax(cnn(torch.as_tensor(X[:10]).reshape(-1, 1, 8, 8)).double(), dim=1).numpy()
    np.testing.assert_allclose(P, own, rtol=0, atol=1e-12)
    assert (t.n_queries, t.n_calls) == (10, 1)
    with pytest.raises(ConfigError, match=r"input_shape \(1, 7, 9\) holds 63 values but the records have 64"):
        TorchModuleTarget(cnn, n_features=64, n_classes=4, input_shape=(1, 7, 9))
    with pytest.raises(ConfigError, match="fixed_batch_size must be a positive integer; got 0"):
        TorchModuleTarget(cnn, n_features=64, n_classes=4, fixed_batch_size=0)


def test_garbage_module_outputs_are_target_errors_naming_the_model(digits) -> None:
    X, _ = digits

    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 3), float("nan"))

    class OneRow(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((1, 3))

    with pytest.raises(TargetError, match="^Nan: the target answered 9 NaN or infinite"):
        TorchModuleTarget(Nan(), n_features=64, n_classes=3).predict_proba(X[:3])
    with pytest.raises(TargetError, match=r"^OneRow: the model answered outputs of shape \(1, 3\) for 3 records"):
        TorchModuleTarget(OneRow(), n_features=64, n_classes=3).predict_proba(X[:3])


def test_bad_queries_and_bad_answers(digits) -> None:
    X, _ = digits
    t = LocalTarget(_model())
    with pytest.raises(DataError, match=r"shape \(n_samples, 64\)"):
        t.predict_proba(X[:3, :10])
    bad = X[:3].copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        t.predict_proba(bad)
    with pytest.raises(TargetError, match=r"^fixed model: the target answered an array of shape \(2, 2\)"):
        Fixed(np.ones((2, 2)) / 2).predict_proba(X[:3])
    with pytest.raises(TargetError, match="NaN"):
        Fixed(np.full((3, 2), np.nan)).predict_proba(X[:3])
    with pytest.raises(TargetError, match=r"look like logits.*3 of 3 rows summing to 2\.\.2"):
        Fixed(np.ones((3, 2))).predict_proba(X[:3])
    with pytest.raises(TargetError, match=r"1 negative values; pass --output-kind logits"):
        Fixed(np.array([[1.2, -0.2]])).predict_proba(X[:1])
    assert check_probabilities(np.array([[0.25, 0.75]]), n_samples=1).shape == (1, 2)


def _top_k(P: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(P)
    idx = np.argsort(-P, axis=1)[:, :k]
    np.put_along_axis(out, idx, np.take_along_axis(P, idx, axis=1), axis=1)
    return out


def test_defended_answers_are_answers_not_errors() -> None:
    P = _softmax_rows(200, 10, seed=0)
    assert describe_answers(P) == "probabilities"
    rounded = np.round(P, 2)
    assert describe_answers(rounded) == "rounded"
    assert profile_answers(rounded) == AnswerProfile("rounded", decimals=2)
    assert str(profile_answers(np.round(P, 1))) == "rounded to 1 decimal"
    top3 = _top_k(P, 3)
    assert (top3.sum(1) < 0.999).any()  # mass is missing: rows are not renormalised
    assert profile_answers(top3) == AnswerProfile("top_k", k=3)
    assert str(profile_answers(top3)) == "top-3 probabilities (rows not renormalised)"
    top1_rounded = np.round(_top_k(P, 1), 2)
    assert profile_answers(top1_rounded) == AnswerProfile("top_k", decimals=2, k=1)
    labels = np.eye(10)[P.argmax(1)]
    assert describe_answers(labels) == "labels"
    assert str(profile_answers(labels)) == "labels only (one-hot rows)"
    for answer in (rounded, top3, top1_rounded, labels):
        np.testing.assert_array_equal(check_probabilities(answer, n_samples=200, n_classes=10), answer)
        # through a black box too, which records what it saw
        box = Fixed(answer, n_classes=10)
        box.predict_proba(np.zeros((200, 64)))
        assert box.answers_ == profile_answers(answer)
    # rounding can push a row's sum past 1 + 1e-3: three classes at 0.335 round to 0.34, 0.34, 0.33
    assert check_probabilities(np.array([[0.34, 0.34, 0.33]]), n_samples=1).sum() == pytest.approx(1.01)


def test_what_is_still_rejected() -> None:
    P = _softmax_rows(50, 10, seed=1)
    top3 = _top_k(P, 3)
    with pytest.raises(TargetError, match=r"look like logits.*1 of 50 rows summing"):
        inflated = top3.copy()
        inflated[0] *= 1.5 / inflated[0].sum()
        check_probabilities(inflated, n_samples=50)
    with pytest.raises(TargetError, match=r"rows not summing to 1\): 50 of 50 rows summing to 0\.5\.\.0\.5"):
        check_probabilities(P / 2, n_samples=50)  # every row has all 10 entries: not top-k, so mass is missing
    with pytest.raises(TargetError, match=r"negative values / rows not summing to 1\): \d+ negative values"):
        check_probabilities(np.log(P), n_samples=50)
    zero_row = top3.copy()
    zero_row[0] = 0.0
    with pytest.raises(TargetError, match="1 of 50 rows summing to 0"):
        check_probabilities(zero_row, n_samples=50)
    with pytest.raises(TargetError, match=r"answers must be an array of shape \(n_samples, n_classes\)"):
        describe_answers(np.ones(3))
    with pytest.raises(TargetError, match="1 NaN or infinite values"):
        profile_answers(np.array([[np.nan, 1.0]]))


def test_detect_output_kind() -> None:
    P = _softmax_rows(20, 4, seed=2)
    assert detect_output_kind(P) == "probabilities"
    assert detect_output_kind(np.log(P)) == "logits"
    assert detect_output_kind(P * 1.01) == "logits"  # rows summing to 1.01: not within 1e-3
    assert detect_output_kind(np.abs(np.log(P))) == "logits"  # non-negative but not summing to 1
