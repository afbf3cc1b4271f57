"""Label-only attacks (Choquette-Choo et al. 2021): the gap baseline, augmentation and noise robustness.

Known answers on digits (8x8 images, scikit-learn's copy, no download) against label-only targets,
measured on AMD EPYC (2 cores), AUC over four data seeds (seed 1, used here, in brackets):

==========================================================  =============  =============  =============
target (members vs non-members)                             label-gap      label-augment  label-noise
==========================================================  =============  =============  =============
MLP 512 units, 500 epochs on 80 digits (vs 400)             0.54-0.56      0.50-0.56      0.68-0.69
                                                            (0.542)                       (0.676)
MLP 256 units, 200 epochs on 100 digits and their four      0.53-0.56      0.66-0.70      0.55-0.63
one-pixel shifts (vs 400), the shadows trained alike        (0.527)        (0.659)
==========================================================  =============  =============  =============

With 80 members and 400 non-members an attack at chance has an AUC standard deviation of 0.035, so the
floor 0.63 is 3.7 of them above 0.5; each robustness attack must also beat the gap attack on the same
records by 0.07 (measured 0.13). Calibration that picked the worst sigma, noise switched off, augmentations
that do not move the image, or a score of the record's own label alone each fail a test here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

import miaudit.attacks.label_only as lo
from miaudit.attacks import AttackerKnowledge, create_attack
from miaudit.attacks.label_only import (
    ImageLayout,
    LabelAugmentAttack,
    LabelGapAttack,
    LabelNoiseAttack,
    augment_images,
    correct_fraction,
    feature_scale,
    image_transforms,
    noise_directions,
    resolve_record_shape,
)
from miaudit.errors import BudgetExhaustedError, ConfigError, DataError, NotFittedError
from miaudit.metrics import auc
from miaudit.seeding import make_rng
from miaudit.studies.schema import ATTACK_ORDER, attack_constructor_params, known_attacks
from miaudit.targets import BlackBox, LocalTarget
from miaudit.targets.policies import PolicyTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

LABEL_ATTACKS = ("label-gap", "label-augment", "label-noise")
ROBUST = ("label-augment", "label-noise")
AUC_FLOOR = 0.63
BEATS_GAP_BY = 0.07


class MemoTrainer:
    """``train_models`` behind a memo: shadows asked for again (same records, same seed) are not retrained."""

    def __init__(self, augment: bool = False) -> None:
        self.augment = augment
        self.calls = 0
        self._memo: dict[tuple[bytes, int, int], object] = {}

    def __call__(self, X, y, train_sets, *, seeds, model, train, progress=None):
        out = []
        for s, seed in zip(train_sets, seeds, strict=True):
            key = (np.asarray(s).tobytes(), int(seed), id(X))
            if key not in self._memo:
                self.calls += 1
                Xs, ys, rows = X, y, s
                if self.augment:  # train on the records and their four one-pixel shifts, as image models are
                    A = augment_images(X[s], ImageLayout(8, 8, 1), image_transforms(1, False))[:, 1:]
                    Xs = np.concatenate([X, A.reshape(-1, X.shape[1])])
                    ys = np.concatenate([y, np.repeat(y[s], A.shape[1])])
                    rows = np.r_[s, len(X) + np.arange(A.shape[0] * A.shape[1])]
                (self._memo[key],) = train_models(Xs, ys, [rows], seeds=[seed], model=model, train=train)
            out.append(self._memo[key])
        return out


class Setup:
    """A target on digits, the attacker's knowledge and the evaluated records (members first)."""

    def __init__(self, digits, *, n_in: int, hidden: int, epochs: int, augment: bool, seed: int = 1) -> None:
        X, y = digits
        perm = make_rng(seed).permutation(len(y))
        self.n_in, self.n_out = n_in, 400
        mem, non, pop = perm[:n_in], perm[n_in : n_in + 400], perm[n_in + 400 :]
        spec = ModelSpec(n_features=64, n_classes=10, hidden=(hidden,))
        train = TrainSpec(epochs=epochs)
        self.trainer = MemoTrainer(augment)
        (self.model,) = self.trainer(X, y, [mem], seeds=[seed], model=spec, train=train)
        self.knowledge = AttackerKnowledge(
            X=X[pop], y=y[pop], n_classes=10, model=spec, train=train, trainer=self.trainer
        )
        ev = np.r_[mem, non]
        self.X, self.y = X[ev], y[ev]
        self.is_member = np.r_[np.ones(n_in, bool), np.zeros(400, bool)]
        self.unseen_X, self.unseen_y = X[pop[:400]], y[pop[:400]]  # never in the target's training set
        self.shadows = {"n_shadows": 1, "shadow_train_size": n_in, "shadow_test_size": 400}

    def attack(self, name: str, **params):
        extra = {} if name == "label-gap" else self.shadows
        return create_attack(name, **{**extra, **params}).fit(self.knowledge)


@pytest.fixture(scope="module")
def plain(digits) -> Setup:
    """An MLP that memorises 80 digits (labels only leak through robustness to noise)."""
    return Setup(digits, n_in=80, hidden=512, epochs=500, augment=False)


@pytest.fixture(scope="module")
def augmented(digits) -> Setup:
    """An MLP trained on 100 digits and their one-pixel shifts, the attacker's shadows alike."""
    return Setup(digits, n_in=100, hidden=256, epochs=200, augment=True)


# ------------------------------------------------------------------------------------ known answers
def test_label_gap_auc_is_its_closed_form(plain: Setup) -> None:
    """Scores are 0/1, ties count one half: AUC = a(1-b) + (ab + (1-a)(1-b))/2 = 0.5 + (a - b)/2."""
    attack = plain.attack("label-gap")
    scores = attack.score(PolicyTarget(LocalTarget(plain.model), "label_only"), plain.X, plain.y)
    correct = plain.model.predict_proba(plain.X).argmax(1) == plain.y
    a, b = correct[plain.is_member].mean(), correct[~plain.is_member].mean()
    assert set(np.unique(scores)) <= {0.0, 1.0} and attack.threshold_ == 0.5
    np.testing.assert_array_equal(scores, correct.astype(float))
    assert auc(plain.is_member, scores) == pytest.approx(0.5 + (a - b) / 2, abs=1e-12)
    assert a == 1.0 and b < 0.95  # the target memorises: a gap the closed form must follow


def test_label_noise_beats_the_gap_attack_on_a_memorising_target(plain: Setup) -> None:
    target = PolicyTarget(LocalTarget(plain.model), "label_only")
    gap = auc(plain.is_member, plain.attack("label-gap").score(target, plain.X, plain.y))
    attack = plain.attack("label-noise")
    noise = auc(plain.is_member, attack.score(target, plain.X, plain.y))
    assert noise >= AUC_FLOOR, f"label-noise AUC {noise:.3f}"
    assert noise >= gap + BEATS_GAP_BY, f"label-noise {noise:.3f} vs gap {gap:.3f}"
    assert attack.sigma_ == attack.sigma_grid_[np.argmax(attack.grid_auc_)]
    assert attack.shadow_auc_ == attack.grid_auc_.max() > 0.6  # the shadows see the same leak
    assert 0.0 < attack.threshold_ < 1.0


def test_label_augment_beats_the_gap_attack_on_a_target_trained_with_augmentation(augmented: Setup) -> None:
    target = PolicyTarget(LocalTarget(augmented.model), "label_only")
    gap = auc(augmented.is_member, augmented.attack("label-gap").score(target, augmented.X, augmented.y))
    attack = augmented.attack("label-augment", flips=False)
    aug = auc(augmented.is_member, attack.score(target, augmented.X, augmented.y))
    assert attack.layout_ == (8, 8, 1, False) and attack.queries_per_record_ == 5
    assert aug >= AUC_FLOOR, f"label-augment AUC {aug:.3f}"
    assert aug >= gap + BEATS_GAP_BY, f"label-augment {aug:.3f} vs gap {gap:.3f}"


@pytest.mark.parametrize("name", LABEL_ATTACKS)
def test_records_the_target_never_saw_score_like_non_members(plain: Setup, name: str) -> None:
    """400 unseen population records posing as members against the 400 non-members: AUC at chance (sd 0.02)."""
    attack = plain.attack(name, **({"flips": False} if name == "label-augment" else {}))
    target = PolicyTarget(LocalTarget(plain.model), "label_only")
    fake = attack.score(target, plain.unseen_X, plain.unseen_y)
    non = attack.score(target, plain.X[plain.n_in :], plain.y[plain.n_in :])
    assert abs(auc(np.r_[np.ones(400, bool), np.zeros(400, bool)], np.r_[fake, non]) - 0.5) < 0.08


def test_fashion_mnist_memorising_target_leaks_through_noisy_labels(memorising_target) -> None:
    """The shared known-answer target (300 members, 900 non-members): measured gap 0.61, label-noise 0.68."""
    ds, split, model, knowledge = memorising_target
    X = ds.X[np.r_[split.target_in, split.target_out]]
    y = ds.y[np.r_[split.target_in, split.target_out]]
    member = np.r_[np.ones(len(split.target_in), bool), np.zeros(len(split.target_out), bool)]
    target = PolicyTarget(LocalTarget(model), "label_only")
    gap = auc(member, LabelGapAttack().fit(knowledge).score(target, X, y))
    noise = LabelNoiseAttack(n_shadows=1, shadow_train_size=300, shadow_test_size=900, seed=0).fit(knowledge)
    value = auc(member, noise.score(target, X, y))
    assert value >= 0.64 and value >= gap + 0.04, f"label-noise {value:.3f}, gap {gap:.3f}"


# ------------------------------------------------------------------------------------ answers and queries
@pytest.mark.parametrize("name", LABEL_ATTACKS)
def test_scores_are_the_same_on_full_top_k_and_label_only_answers(plain: Setup, name: str) -> None:
    attack = plain.attack(name)
    full = LocalTarget(plain.model)
    s_full = attack.score(full, plain.X[:120], plain.y[:120])
    for policy in ("label_only", "top_k:2"):
        np.testing.assert_array_equal(attack.score(PolicyTarget(full, policy), plain.X[:120], plain.y[:120]), s_full)


class CountingTarget(BlackBox):
    """Answers like the model; keeps every query batch; refuses to go past ``budget`` records."""

    def __init__(self, model, budget: int | None = None) -> None:
        super().__init__(n_features=64, n_classes=10)
        self.model, self.budget, self.batches = model, budget, []

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.budget is not None and self.n_queries + len(X) > self.budget:
            raise BudgetExhaustedError(f"budget of {self.budget} queries spent")
        self.batches.append(np.array(X))
        return self.model.predict_proba(X)


@pytest.mark.parametrize(("name", "per_record"), [("label-gap", 1), ("label-augment", 10), ("label-noise", 21)])
def test_each_record_costs_n_plus_one_queries_itself_first(plain: Setup, name: str, per_record: int) -> None:
    attack = plain.attack(name)
    target = CountingTarget(plain.model)
    attack.score(target, plain.X[:30], plain.y[:30])
    assert attack.queries_per_record_ == per_record
    assert attack.n_queries_ == target.n_queries == 30 * per_record
    sent = np.concatenate(target.batches)
    np.testing.assert_array_equal(sent[::per_record], plain.X[:30])  # each record's own query comes first


def test_queries_are_chunked_without_changing_scores(plain: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    attack = plain.attack("label-noise")
    whole = attack.score(LocalTarget(plain.model), plain.X[:50], plain.y[:50])
    monkeypatch.setattr(lo, "QUERY_CHUNK_VALUES", 64 * 21 * 7)  # 7 records a call
    target = CountingTarget(plain.model)
    np.testing.assert_array_equal(attack.score(target, plain.X[:50], plain.y[:50]), whole)
    assert [len(b) for b in target.batches] == [7 * 21] * 7 + [21]


def test_a_spent_budget_propagates_unchanged(plain: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    attack = plain.attack("label-noise")
    monkeypatch.setattr(lo, "QUERY_CHUNK_VALUES", 64 * 21 * 10)  # 210 queries a call
    target = CountingTarget(plain.model, budget=1000)
    with pytest.raises(BudgetExhaustedError, match="budget of 1000 queries spent"):
        attack.score(target, plain.X, plain.y)
    assert attack.n_queries_ == target.n_queries == 840  # the four calls answered are counted


def test_label_noise_scores_do_not_depend_on_the_batch(plain: Setup) -> None:
    attack = plain.attack("label-noise")
    target = LocalTarget(plain.model)
    whole = attack.score(target, plain.X[:60], plain.y[:60])
    parts = np.r_[
        attack.score(target, plain.X[40:60], plain.y[40:60]), attack.score(target, plain.X[:40], plain.y[:40])
    ]
    np.testing.assert_array_equal(np.r_[parts[20:], parts[:20]], whole)


# ------------------------------------------------------------------------------------ seeds
def test_same_seed_same_scores_other_seed_other_noise(plain: Setup) -> None:
    target = LocalTarget(plain.model)
    a = plain.attack("label-noise", sigma=0.3, seed=3).score(target, plain.X, plain.y)
    b = plain.attack("label-noise", sigma=0.3, seed=3).score(target, plain.X, plain.y)
    c = plain.attack("label-noise", sigma=0.3, seed=4).score(target, plain.X, plain.y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    Z = noise_directions(plain.X[:5], 3, seed=1)
    np.testing.assert_array_equal(Z, noise_directions(plain.X[:5], 3, seed=1))
    assert not np.array_equal(Z, noise_directions(plain.X[:5], 3, seed=2))
    assert Z.shape == (5, 3, 64) and abs(float(noise_directions(plain.X, 50, seed=0).std()) - 1.0) < 0.01


def test_label_augment_same_seed_same_shadows_other_seed_other_shadows(augmented: Setup) -> None:
    one = augmented.attack("label-augment", seed=5)
    again = augmented.attack("label-augment", seed=5)
    other = augmented.attack("label-augment", seed=6)
    assert (one.threshold_, one.shadow_auc_) == (again.threshold_, again.shadow_auc_)
    assert one.shadow_auc_ != other.shadow_auc_
    target = LocalTarget(augmented.model)
    np.testing.assert_array_equal(
        one.score(target, augmented.X, augmented.y), again.score(target, augmented.X, augmented.y)
    )


def test_shadows_are_those_of_train_shadows(plain: Setup) -> None:
    """The same sets and seeds as the threshold attacks' shadows: a model cache serves both."""
    calls = plain.trainer.calls
    plain.attack("label-noise", seed=9)
    plain.attack("label-augment", seed=9)
    plain.attack("loss", seed=9, n_shadows=1, shadow_train_size=80, shadow_test_size=400)
    assert plain.trainer.calls == calls + 1


# ------------------------------------------------------------------------------------ pure functions
def test_augment_images_shifts_with_zero_fill_and_mirrors() -> None:
    img = np.arange(1.0, 10.0).reshape(3, 3)
    out = augment_images(img.reshape(1, 9), ImageLayout(3, 3, 1), [(False, 0, 0), (False, 1, 0), (True, 0, -1)])
    np.testing.assert_array_equal(out[0, 0].reshape(3, 3), img)
    np.testing.assert_array_equal(out[0, 1].reshape(3, 3), [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(out[0, 2].reshape(3, 3), [[2, 1, 0], [5, 4, 0], [8, 7, 0]])


def test_channels_first_and_channels_last_records_augment_alike() -> None:
    rgb = make_rng(0).random((2, 5, 6, 3)).astype(np.float32)  # (n, height, width, channels)
    last = resolve_record_shape((5, 6, 3), 90)
    first = resolve_record_shape((3, 5, 6), 90)
    assert last == (5, 6, 3, False) and first == (5, 6, 3, True)
    tr = image_transforms(2, True)
    a = augment_images(rgb.reshape(2, -1), last, tr).reshape(2, len(tr), 5, 6, 3)
    b = augment_images(rgb.transpose(0, 3, 1, 2).reshape(2, -1), first, tr).reshape(2, len(tr), 3, 5, 6)
    np.testing.assert_array_equal(a, b.transpose(0, 1, 3, 4, 2))


def test_transforms_and_fractions() -> None:
    assert image_transforms(1, True)[0] == (False, 0, 0) and len(image_transforms(1, True)) == 10
    assert len(set(image_transforms(2, True))) == 26
    assert resolve_record_shape(None, 784) == (28, 28, 1, False)
    np.testing.assert_array_equal(correct_fraction(np.array([[3, 3], [1, 3]]), np.array([3, 3])), [1.0, 0.5])
    X = make_rng(1).normal(2.0, [1.0, 3.0, 0.5], size=(20_000, 3)).astype(np.float32)
    assert feature_scale(X) == pytest.approx(np.sqrt(np.mean(X.astype(np.float64).var(axis=0))), rel=1e-9)


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("label-noise", {"sigma": -0.1}, "sigma must be a finite number > 0"),
        ("label-noise", {"sigma": 0}, "sigma must be a finite number > 0"),
        ("label-noise", {"sigma": float("nan")}, "sigma must be a finite number > 0"),
        ("label-noise", {"sigma": True}, "sigma must be a finite number > 0"),
        ("label-noise", {"n_copies": 0}, "n_copies must be an integer >= 1; got 0"),
        ("label-noise", {"n_shadows": 0}, "n_shadows must be an integer >= 1; got 0"),
        ("label-noise", {"shadow_test_size": 2.5}, "shadow_test_size must be an integer >= 1"),
        ("label-augment", {"max_shift": -1}, "max_shift must be an integer >= 0; got -1"),
        ("label-augment", {"flips": "yes"}, "flips must be True or False"),
        ("label-augment", {"disjoint_shadows": None}, "disjoint_shadows must be True or False"),
        ("label-augment", {"max_shift": 0, "flips": False}, "no augmentation to query; use label-gap"),
        ("label-augment", {"record_shape": "28x28"}, "record_shape must be a tuple of integers"),
        ("label-augment", {"record_shape": (64,)}, r"record_shape must be \(height, width\)"),
        ("label-augment", {"record_shape": (8.0, 8)}, r"record_shape must be \(height, width\)"),
        ("label-augment", {"record_shape": (0, 8)}, r"record_shape \(0, 8\) holds 0 values"),
    ],
)
def test_bad_parameters_are_config_errors(name: str, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_attack(name, **params).check_params()


def test_record_shapes_that_do_not_fit_the_records_fail_at_fit(plain: Setup, digits) -> None:
    with pytest.raises(ConfigError, match=r"record_shape \(4, 4\) holds 16 values but the records have 64 features"):
        plain.attack("label-augment", record_shape=(4, 4))
    with pytest.raises(ConfigError, match="max_shift=8 moves a 8x8 image out of view; choose max_shift < 8"):
        plain.attack("label-augment", max_shift=8)
    X, y = digits
    spec = ModelSpec(n_features=60, n_classes=10, hidden=(8,))
    tabular = AttackerKnowledge(X=X[:500, :60], y=y[:500], n_classes=10, model=spec, train=TrainSpec(epochs=1))
    with pytest.raises(ConfigError, match="60 features are not a square image; pass record_shape=.*label-noise"):
        LabelAugmentAttack().fit(tabular)


class FiveClasses(BlackBox):
    """A target of another task: five classes, uniform answers."""

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), 5), 0.2)


def test_scoring_errors(plain: Setup) -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        LabelNoiseAttack().score(LocalTarget(plain.model), plain.X, plain.y)
    attack = plain.attack("label-augment")
    with pytest.raises(DataError, match="X must have 64 features per record, as when fitted; got 63"):
        attack.score(LocalTarget(plain.model), plain.X[:, :63], plain.y)
    five = FiveClasses(n_features=64, n_classes=5)
    for name in LABEL_ATTACKS:
        with pytest.raises(DataError, match="the target answers 5 classes but the attacker's knowledge has 10"):
            plain.attack(name).score(five, plain.X[:4], plain.y[:4])
    with pytest.raises(ConfigError, match="needs the records themselves"):
        attack.score_outputs(np.full((2, 10), 0.1), np.array([0, 1]))


def test_label_gap_scores_stored_outputs_by_their_argmax(plain: Setup) -> None:
    gap = LabelGapAttack().fit(plain.knowledge)
    P = np.array([[0.1, 0.5, 0.4] + [0.0] * 7, [0.6, 0.3, 0.1] + [0.0] * 7, [0.0, 1.0] + [0.0] * 8])
    np.testing.assert_array_equal(gap.score_outputs(P, np.array([1, 1, 1])), [1.0, 0.0, 1.0])
    with pytest.raises(NotFittedError):
        LabelGapAttack().score_outputs(P, np.array([1, 1, 1]))


def test_a_population_too_small_for_the_shadows_is_a_data_error(plain: Setup) -> None:
    with pytest.raises(DataError, match="records are needed"):
        LabelNoiseAttack(shadow_train_size=3000, shadow_test_size=2000).fit(plain.knowledge)


# ------------------------------------------------------------------------------------ registry
def test_registered_and_known_to_studies() -> None:
    for name, cls in zip(LABEL_ATTACKS, (LabelGapAttack, LabelAugmentAttack, LabelNoiseAttack), strict=True):
        attack = create_attack(name)
        assert type(attack) is cls and attack.name == name
    assert ATTACK_ORDER[-3:] == LABEL_ATTACKS and known_attacks()[9:12] == list(LABEL_ATTACKS)
    shared: Sequence[str] = ("n_shadows", "shadow_train_size", "shadow_test_size", "disjoint_shadows")
    assert set(shared) <= set(attack_constructor_params("label-noise"))
    assert set(shared) <= set(attack_constructor_params("label-augment"))
    assert attack_constructor_params("label-gap") == ()
    assert create_attack("label-noise", sigma=0.2, n_copies=5).get_params()["sigma"] == 0.2
