"""The fast RBF SVM (:class:`RBFSVC`) makes the decisions of scikit-learn's ``SVC(kernel="rbf")``.

Equality is checked on shadow-like outputs (synthetic probability vectors of a 10-class model whose
members get more confident outputs) and on the outputs of small networks trained on digits: the same
support vectors and dual coefficients, decision values equal to 1e-9 relative, the same signs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

import miaudit.attacks.classifiers as classifiers
import miaudit.attacks.rbf_svm as rbf_svm
from miaudit.attacks import AttackerKnowledge, ShadowData, ShadowModelAttack, attack_features, make_attack_model
from miaudit.attacks.classifiers import RBFSVC, classifier_scores
from miaudit.attacks.rbf_svm import rbf_decision_values, rbf_kernel_matrix
from miaudit.attacks.shadow import train_shadows
from miaudit.errors import DataError, NotFittedError
from miaudit.seeding import derive_seed
from miaudit.training.specs import ModelSpec, TrainSpec


def _outputs(n: int, seed: int, n_classes: int = 10) -> ShadowData:
    """Softmax outputs of a 10-class model: members' true-label logits get a larger, noisier boost."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    member = rng.random(n) < 0.6
    logits = rng.normal(0.0, 1.5, size=(n, n_classes))
    boost = np.where(member, rng.normal(6.0, 2.5, n), rng.normal(4.5, 3.0, n))
    logits[np.arange(n), labels] += boost
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return ShadowData(P, labels, member, np.arange(n) % 4)


def _features(d: ShadowData) -> tuple[np.ndarray, np.ndarray]:
    return attack_features(d.probs, d.labels), d.is_member.astype(int)


def _assert_same_model(ref, fast: RBFSVC, X_eval: np.ndarray) -> np.ndarray:
    """The same libsvm solution, and decision values equal to 1e-9 relative with identical signs."""
    np.testing.assert_array_equal(fast.support_, ref.support_)
    np.testing.assert_array_equal(fast.n_support_, ref.n_support_)
    np.testing.assert_allclose(fast.dual_coef_, ref.dual_coef_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fast.intercept_, ref.intercept_, rtol=1e-12, atol=0)
    assert fast.gamma_ == ref._gamma
    want, got = ref.decision_function(X_eval), fast.decision_function(X_eval)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got > 0, want > 0)
    np.testing.assert_array_equal(fast.predict(X_eval), ref.predict(X_eval))
    return want


@pytest.mark.parametrize("limit", [10_000, 100], ids=["precomputed-kernel", "libsvm-kernel"])
def test_rbfsvc_equals_scikit_learn_svc(limit: int) -> None:
    F, t = _features(_outputs(1500, 0))
    F_eval, t_eval = _features(_outputs(1000, 1))
    scaler = StandardScaler().fit(F)
    X, X_eval = scaler.transform(F), scaler.transform(F_eval)
    ref = rbf_svm.reference_rbf_svm(seed=3).fit(X, t)
    fast = RBFSVC(random_state=3, precompute_max_samples=limit).fit(X, t)
    assert fast.fit_path_ == ("precomputed" if limit > len(X) else "rbf")
    want = _assert_same_model(ref, fast, X_eval)
    # a real classifier, not a constant: both signs, and it separates members better than chance
    assert 0.2 < np.mean(want > 0) < 0.9
    assert np.mean((want > 0) == t_eval) > 0.6


def test_attack_scores_equal_the_plain_svc_pipeline_on_trained_networks(digits) -> None:
    """Shadow outputs of small networks trained on digits, global and per-class classifiers, with a cap."""
    X, y = digits
    kn = AttackerKnowledge(
        X=X, y=y, n_classes=10, model=ModelSpec(n_features=64, n_classes=10, hidden=(32,)), train=TrainSpec(epochs=8)
    )
    data = train_shadows(kn, n_shadows=4, train_size=250, test_size=150, seed=5)
    shadows, last = data.first(3), data.shadow_id == 3
    held = ShadowData(data.probs[last], data.labels[last], data.is_member[last], data.shadow_id[last])
    attack = ShadowModelAttack(
        n_shadows=3, attack_model="rbf-svm", per_class=True, max_train_samples=900, seed=7
    ).fit_shadow_data(shadows)
    got = attack.score_outputs(held.probs, held.labels)

    # the previous code: features of every row, the same subsamples, scikit-learn's SVC in the pipeline
    F, target = _features(shadows)
    seed = derive_seed(7, "attack-model") % 2**32
    ref_models = {}
    for key in attack.attack_models_:
        mask = np.ones(len(target), bool) if key is None else shadows.labels == key
        rows = attack._subsample(target, mask, "all" if key is None else key)
        ref_models[key] = make_pipeline(StandardScaler(), rbf_svm.reference_rbf_svm(seed=seed)).fit(
            F[rows], target[rows]
        )
        fitted = attack.attack_models_[key][-1]
        assert len(fitted.support_) > 10
        np.testing.assert_array_equal(fitted.support_, ref_models[key][-1].support_)
    F_held = attack_features(held.probs, held.labels)
    want = classifier_scores(ref_models[None], F_held)
    for c, m in ref_models.items():
        if c is not None and (held.labels == c).any():
            want[held.labels == c] = classifier_scores(m, F_held[held.labels == c])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got >= attack.threshold_, want >= 0.0)
    assert 0.0 < np.mean(got >= 0) < 1.0


def test_per_class_fits_on_threads_equal_fits_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import miaudit.attacks.shadow as shadow

    d = _outputs(1200, 2)
    scores = {}
    for threads in (1, 2):
        monkeypatch.setattr(shadow, "FIT_THREADS", threads)
        a = ShadowModelAttack(attack_model="rbf-svm", per_class=True, seed=1).fit_shadow_data(d)
        assert set(a.attack_models_) == {None, *range(10)}
        scores[threads] = a.score_outputs(d.probs[:300], d.labels[:300])
    np.testing.assert_array_equal(scores[1], scores[2])


def test_features_of_a_subset_are_the_subset_of_the_features() -> None:
    d = _outputs(2000, 4)
    rows = np.sort(np.random.default_rng(0).choice(2000, size=777, replace=False))
    for features in classifiers.FEATURE_SETS:
        np.testing.assert_array_equal(
            attack_features(d.probs[rows], d.labels[rows], features=features),
            attack_features(d.probs, d.labels, features=features)[rows],
        )


def test_near_zero_decisions_are_recomputed_by_libsvm(monkeypatch: pytest.MonkeyPatch) -> None:
    F, t = _features(_outputs(800, 6))
    X = StandardScaler().fit_transform(F)
    ref = rbf_svm.reference_rbf_svm(seed=0).fit(X, t)
    fast = RBFSVC(random_state=0).fit(X, t)
    want = ref.decision_function(X[:200])
    # every row inside the band: libsvm's own values, bit for bit
    monkeypatch.setattr(rbf_svm, "_EXACT_BAND", 1e9)
    np.testing.assert_array_equal(fast.decision_function(X[:200]), want)
    # no row inside the band: the matrix-product values, close to libsvm's but computed otherwise
    monkeypatch.setattr(rbf_svm, "_EXACT_BAND", 0.0)
    fast_values = fast.decision_function(X[:200])
    np.testing.assert_allclose(fast_values, want, rtol=1e-9, atol=1e-12)
    assert not np.array_equal(fast_values, want)


def test_kernel_matrix_and_decision_values() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 21))
    K = rbf_kernel_matrix(X, gamma=0.05)
    np.testing.assert_allclose(K, rbf_kernel(X, gamma=0.05), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(np.diag(K), np.ones(700))
    np.testing.assert_array_equal(rbf_kernel_matrix(X, gamma=0.05, n_threads=2), K)

    S, coef = X[:300], rng.normal(size=300)
    Z = rng.normal(size=(400, 21)) * 3  # far from the origin: the expansion |x|^2 + |s|^2 - 2 x.s cancels
    dec, scale = rbf_decision_values(Z, S, coef, 0.25, gamma=0.05)
    exact = np.array([np.sum(coef * np.exp(-0.05 * np.sum((z - S) ** 2, axis=1))) for z in Z]) + 0.25
    np.testing.assert_allclose(dec, exact, rtol=1e-10, atol=1e-13)
    assert np.all(np.abs(dec - exact) <= 1e-13 * scale)  # the error scale bounds the rounding, with room
    assert np.all(scale >= np.abs(dec - 0.25) - 1e-12)  # and is at least the sum it bounds
    dec2, scale2 = rbf_decision_values(Z, S, coef, 0.25, gamma=0.05, n_threads=2)
    np.testing.assert_array_equal(dec2, dec)
    np.testing.assert_array_equal(scale2, scale)


def test_blas_threads_are_restored_after_overlapping_fits() -> None:
    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    F, t = _features(_outputs(600, 8))
    with ThreadPoolExecutor(max_workers=3) as pool:
        fitted = list(pool.map(lambda s: RBFSVC(random_state=s, n_threads=2).fit(F, t), range(6)))
    assert blas_threads() == before
    assert all(np.array_equal(m.dual_coef_, fitted[0].dual_coef_) for m in fitted)


def test_rbf_svm_factory_and_errors() -> None:
    model = make_attack_model("rbf-svm", seed=4)
    assert isinstance(model[-1], RBFSVC)
    assert model[-1].random_state == 4
    with pytest.raises(NotFittedError, match=r"RBFSVC is not fitted yet; call fit\(X, y\)"):
        RBFSVC().decision_function(np.zeros((2, 3)))
    F, t = _features(_outputs(300, 9))
    with pytest.raises(DataError, match="RBFSVC separates two classes .* y has 1: give it records of both"):
        RBFSVC().fit(F, np.ones(300, int))
    with pytest.raises(DataError, match=r"X must be 2-d and y 1-d of the same length; got shapes \(300, 21\) and \(5,"):
        RBFSVC().fit(F, t[:5])
    fitted = RBFSVC().fit(F, t)
    with pytest.raises(DataError, match=r"X must have shape \(n_samples, 21\); got \(4, 20\)"):
        fitted.decision_function(F[:4, :20])


def test_kernel_buffer_is_reused_released_and_never_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    rbf_svm.release_kernel_buffer()
    with rbf_svm._kernel_buffer(100) as a:
        a[:] = 1.0
        with rbf_svm._kernel_buffer(100) as b:  # a second fit at the same time gets its own array
            assert not np.shares_memory(a, b)
    with rbf_svm._kernel_buffer(60) as c:  # a smaller matrix reuses the kept buffer
        assert c.shape == (60, 60) and c.flags.c_contiguous
        assert np.shares_memory(a, c)
    with rbf_svm._kernel_buffer(120) as d:  # a larger one replaces it
        assert not np.shares_memory(a, d)
    X = np.random.default_rng(1).normal(size=(80, 5))
    with rbf_svm._kernel_buffer(80) as f:
        assert np.shares_memory(d, f)
        np.testing.assert_array_equal(rbf_kernel_matrix(X, gamma=0.3, out=f), rbf_kernel_matrix(X, gamma=0.3))
    rbf_svm.release_kernel_buffer()
    assert rbf_svm._buffer is None
    monkeypatch.setattr(rbf_svm, "KERNEL_BUFFER_MAX_MB", 0)
    with rbf_svm._kernel_buffer(10) as e:
        assert e.shape == (10, 10)
    assert rbf_svm._buffer is None  # too large to keep: not kept
    with pytest.raises(DataError, match=r"out must be a C-contiguous float64 array of shape \(80, 80\); got float32"):
        rbf_kernel_matrix(X, gamma=0.3, out=np.empty((80, 80), dtype=np.float32))
