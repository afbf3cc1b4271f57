from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miaudit.data.splits import MembershipSplit, make_split, random_halves
from miaudit.errors import ConfigError, DataError

Y = np.arange(1000) % 10


def _split(**kw) -> MembershipSplit:
    args = {"target_size": 100, "n_shadows": 3, "shadow_train_size": 50, "shadow_test_size": 40, "seed": 0}
    return make_split(Y, **(args | kw))


@st.composite
def split_args(draw: st.DrawFn) -> dict:
    n = draw(st.integers(2, 300))
    target_size = draw(st.integers(1, n // 2))
    target_test_size = draw(st.one_of(st.none(), st.integers(1, n - target_size)))
    left = n - target_size - (target_size if target_test_size is None else target_test_size)
    n_shadows = draw(st.integers(0, 5))
    if n_shadows and left >= 2 * n_shadows:
        train = draw(st.integers(1, left // n_shadows - 1))
        test = draw(st.integers(1, left // n_shadows - train))
    else:
        n_shadows, train, test = 0, 0, 0
    return {
        "y": draw(st.integers(2, 6).map(lambda k: np.arange(n) % k)),
        "target_size": target_size,
        "target_test_size": target_test_size,
        "n_shadows": n_shadows,
        "shadow_train_size": train,
        "shadow_test_size": test,
        "seed": draw(st.integers(0, 2**63 - 1)),
        "stratify": draw(st.booleans()),
    }


@settings(max_examples=50, deadline=None)
@given(split_args())
def test_split_properties(args: dict) -> None:
    split = make_split(**args)
    n = len(args["y"])
    test_size = args["target_test_size"] or args["target_size"]
    assert len(split.target_in) == args["target_size"] and len(split.target_out) == test_size
    assert split.n_shadows == args["n_shadows"] == len(split.shadow_out)
    assert all(len(s) == args["shadow_train_size"] for s in split.shadow_in)
    assert all(len(s) == args["shadow_test_size"] for s in split.shadow_out)
    sets = [split.target_in, split.target_out, *split.shadow_in, *split.shadow_out]
    as_sets = [set(s.tolist()) for s in sets]
    assert sum(map(len, as_sets)) == len(set().union(*as_sets)) == sum(map(len, sets))  # pairwise disjoint
    population = set(split.population.tolist())
    assert population == set(range(n)) - as_sets[0] - as_sets[1]
    assert all(s <= population for s in as_sets[2:])
    for s in [*sets, split.population]:
        assert s.dtype == np.int64 and (s.size == 0 or (s.min() >= 0 and s.max() < n))
        assert np.all(np.diff(s) > 0)  # sorted, unique


def test_stratified_proportions() -> None:
    y = np.repeat(np.arange(4), [400, 300, 200, 100])  # 40/30/20/10 %
    split = make_split(
        y, target_size=100, n_shadows=2, shadow_train_size=50, shadow_test_size=30, seed=3, stratify=True
    )
    np.testing.assert_array_equal(np.bincount(y[split.target_in], minlength=4), [40, 30, 20, 10])
    np.testing.assert_array_equal(np.bincount(y[split.shadow_in[1]], minlength=4), [20, 15, 10, 5])
    for s in split.shadow_out:
        assert np.abs(np.bincount(y[s], minlength=4) - np.array([12, 9, 6, 3])).max() <= 1
    split.check_disjoint(len(y))


def test_pool_too_small() -> None:
    with pytest.raises(
        DataError,
        match=r"asks for 1100 records \(target_size 100 \+ target_test_size 100 \+ "
        r"n_shadows 10 x \(shadow_train_size 50 \+ shadow_test_size 40\) = 900\) but the dataset "
        r"has only 1000; reduce one of these by 100",
    ):
        _split(n_shadows=10)
    make_split(Y, target_size=500, n_shadows=0, shadow_train_size=0, shadow_test_size=0, seed=0)  # exactly fits


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b, c = _split(seed=7), _split(seed=7), _split(seed=8)
    assert a.to_dict() == b.to_dict() and a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.target_in, c.target_in) and a.fingerprint() != c.fingerprint()
    assert _split(seed=7, stratify=True).to_dict() == _split(seed=7, stratify=True).to_dict()


def test_no_shadows() -> None:
    split = _split(n_shadows=0, shadow_train_size=0, shadow_test_size=0)
    assert split.n_shadows == 0 and split.shadow_in == () and len(split.population) == 800


@pytest.mark.parametrize(
    ("kw", "error", "pattern"),
    [
        ({"target_size": 0}, ConfigError, "target_size must be an int >= 1, got 0"),
        ({"n_shadows": -1}, ConfigError, "n_shadows must be an int >= 0, got -1"),
        ({"shadow_train_size": 0}, ConfigError, "shadow_train_size must be an int >= 1, got 0"),
        ({"shadow_test_size": -3}, ConfigError, "shadow_test_size must be an int >= 1"),
        ({"target_test_size": 0}, ConfigError, "target_test_size must be an int >= 1"),
        ({"target_size": 10.0}, TypeError, r"target_size must be an int >= 1, got 10.0 \(float\)"),
        ({"n_shadows": True}, TypeError, "n_shadows must be an int"),
        ({"seed": -1}, ValueError, "seed must be between"),
    ],
)
def test_bad_arguments(kw: dict, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        _split(**kw)


def test_bad_labels() -> None:
    with pytest.raises(DataError, match=r"y must be an ndarray of shape \(n_samples,\)"):
        make_split(Y.reshape(100, 10), target_size=1, n_shadows=0, shadow_train_size=0, shadow_test_size=0, seed=0)


def test_json_round_trip() -> None:
    split = _split()
    back = MembershipSplit.from_dict(json.loads(json.dumps(split.to_dict())))
    assert back.to_dict() == split.to_dict() and back.seed == 0
    assert not back.target_in.flags.writeable
    with pytest.raises(DataError, match="split dict lacks seed, population; expected the keys"):
        MembershipSplit.from_dict({"target_in": [], "target_out": [], "shadow_in": [], "shadow_out": []})


def test_check_disjoint_detects_violations() -> None:
    d = _split().to_dict()
    bad = d | {"target_out": [d["target_in"][0], *d["target_out"][1:]]}
    with pytest.raises(DataError, match=r"target_in and target_out share 1 indices"):
        MembershipSplit.from_dict(bad)
    bad = d | {"shadow_out": [d["shadow_in"][0][:1], *d["shadow_out"][1:]]}
    with pytest.raises(DataError, match=r"shadow_in\[0\] and shadow_out\[0\] share 1 indices"):
        MembershipSplit.from_dict(bad)
    with pytest.raises(DataError, match="target_in and population share"):
        MembershipSplit.from_dict(d | {"population": [*d["population"], d["target_in"][0]]})
    with pytest.raises(DataError, match=r"shadow_in\[2\] has 50 indices outside the population"):
        MembershipSplit.from_dict(d | {"population": sorted(set(d["population"]) - set(d["shadow_in"][2]))})
    with pytest.raises(DataError, match="target_in contains repeated indices"):
        MembershipSplit.from_dict(d | {"target_in": [1, 1]})
    with pytest.raises(
        DataError, match=r"target_in has indices from \d+ to 9\d\d, outside 0..499 \(the dataset has 500"
    ):
        MembershipSplit.from_dict(d).check_disjoint(500)
    with pytest.raises(DataError, match="shadow_in has 3 sets but shadow_out has 2"):
        MembershipSplit.from_dict(d | {"shadow_out": d["shadow_out"][:2]})
    with pytest.raises(DataError, match="target_in must hold integer record indices"):
        MembershipSplit.from_dict(d | {"target_in": [0.5]}, check=False)


@pytest.mark.parametrize("n_models", [1, 2, 5, 8, 64])
def test_random_halves(n_models: int) -> None:
    population = np.arange(500, 1501)
    keep = random_halves(population, n_models, seed=1)
    assert keep.shape == (n_models, len(population)) and keep.dtype == np.bool_
    columns = keep.sum(axis=0)
    if n_models % 2 == 0:
        assert np.all(columns == n_models // 2)
    else:  # alternately rounded down and up
        assert np.all(columns[::2] == n_models // 2) and np.all(columns[1::2] == n_models // 2 + 1)
    if n_models >= 2:  # every model gets about half: binomial sd is about 16 records, allow 6 sd
        assert np.all(np.abs(keep.sum(axis=1) - len(population) / 2) < 100)
    np.testing.assert_array_equal(keep, random_halves(population, n_models, seed=1))
    if n_models >= 2:
        assert not np.array_equal(keep, random_halves(population, n_models, seed=2))


def test_random_halves_is_uniform() -> None:
    """Each (model, record) pair is IN with probability 1/2: 4 models x 4000 records, 16000 draws."""
    keep = random_halves(np.arange(4000), 4, seed=5)
    pairs = keep[0] & keep[1]  # P = 1/2 * 1/3 = 1/6 for n_models=4 (sampling without replacement)
    assert abs(pairs.mean() - 1 / 6) < 0.03


def test_random_halves_errors() -> None:
    with pytest.raises(ConfigError, match="n_models must be an int >= 1, got 0"):
        random_halves(np.arange(4), 0, seed=0)
    with pytest.raises(DataError, match="population must be a 1-D array"):
        random_halves(np.zeros((2, 2)), 2, seed=0)


# ------------------------------------------------------------------ disjointness, pair by pair
SETS = ["target_in", "target_out", "shadow_in[0]", "shadow_out[0]", "shadow_in[1]", "shadow_out[1]"]
TWO_SHADOWS = {"target_size": 100, "n_shadows": 2, "shadow_train_size": 50, "shadow_test_size": 40, "seed": 5}


def _get(split: MembershipSplit, name: str) -> np.ndarray:
    if name.startswith("shadow_"):
        kind, k = name[:-3], int(name[-2])
        return getattr(split, kind)[k]
    return getattr(split, name)


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize(("a", "b"), [(a, b) for i, a in enumerate(SETS) for b in SETS[i + 1 :]], ids=str)
def test_make_split_sets_are_pairwise_disjoint(a: str, b: str, stratify: bool) -> None:
    """Checked here with Python sets, not with check_disjoint: each pair separately."""
    split = make_split(Y, **TWO_SHADOWS, stratify=stratify)
    common = set(_get(split, a).tolist()) & set(_get(split, b).tolist())
    assert not common, f"{a} and {b} share {sorted(common)[:5]}"


@pytest.mark.parametrize("stratify", [False, True])
def test_make_split_population_excludes_the_target_and_holds_the_shadows(stratify: bool) -> None:
    split = make_split(Y, **TWO_SHADOWS, stratify=stratify)
    population = set(split.population.tolist())
    assert not population & set(split.target_in.tolist())
    assert not population & set(split.target_out.tolist())
    for name in SETS[2:]:
        assert set(_get(split, name).tolist()) <= population, name
    assert population | set(split.target_in.tolist()) | set(split.target_out.tolist()) == set(range(len(Y)))
    for name in [*SETS, "population"]:
        values = split.population if name == "population" else _get(split, name)
        assert len(np.unique(values)) == len(values), f"{name} repeats an index"


def _with(d: dict, name: str, values: list[int]) -> dict:
    """``d`` (a split dict) with the set ``name`` replaced by ``values``."""
    if name.startswith("shadow_"):
        kind, k = name[:-3], int(name[-2])
        sets = [list(s) for s in d[kind]]
        sets[k] = values
        return d | {kind: sets}
    return d | {name: values}


def _values(d: dict, name: str) -> list[int]:
    if name.startswith("shadow_"):
        return list(d[name[:-3]][int(name[-2])])
    return list(d[name])


@pytest.mark.parametrize(("a", "b"), [(a, b) for i, a in enumerate(SETS) for b in SETS[i + 1 :]], ids=str)
def test_check_disjoint_rejects_every_overlapping_pair(a: str, b: str) -> None:
    """One index of ``a`` is put into ``b`` (replacing one of b's): exactly this pair overlaps."""
    d = make_split(Y, **TWO_SHADOWS).to_dict()
    shared = _values(d, a)[0]
    bad = _with(d, b, [shared, *_values(d, b)[1:]])
    with pytest.raises(DataError, match=rf"split invalid: {re.escape(a)} and {re.escape(b)} share 1 indices"):
        MembershipSplit.from_dict(bad)


@pytest.mark.parametrize("name", ["target_in", "target_out"])
def test_check_disjoint_rejects_target_records_in_the_population(name: str) -> None:
    d = make_split(Y, **TWO_SHADOWS).to_dict()
    bad = d | {"population": sorted([*d["population"], d[name][3]])}
    with pytest.raises(DataError, match=rf"split invalid: {name} and population share 1 indices.*must exclude"):
        MembershipSplit.from_dict(bad)


@pytest.mark.parametrize("name", SETS[2:])
def test_check_disjoint_rejects_shadow_records_outside_the_population(name: str) -> None:
    d = make_split(Y, **TWO_SHADOWS).to_dict()
    bad = d | {"population": sorted(set(d["population"]) - {_values(d, name)[0]})}
    with pytest.raises(DataError, match=rf"split invalid: {re.escape(name)} has 1 indices outside the population"):
        MembershipSplit.from_dict(bad)


@pytest.mark.parametrize("name", [*SETS, "population"])
def test_check_disjoint_rejects_a_repeated_index(name: str) -> None:
    d = make_split(Y, **TWO_SHADOWS).to_dict()
    values = _values(d, name)
    bad = _with(d, name, [values[0], *values[:-1]])  # same length, first index twice
    with pytest.raises(DataError, match=rf"split invalid: {re.escape(name)} contains repeated indices"):
        MembershipSplit.from_dict(bad)


@pytest.mark.parametrize("name", [*SETS, "population"])
def test_check_disjoint_rejects_indices_outside_the_dataset(name: str) -> None:
    split = make_split(Y, **TWO_SHADOWS)
    d = split.to_dict()
    values = _values(d, name)
    bad = MembershipSplit.from_dict(_with(d, name, [*values[:-1], len(Y)]), check=False)
    with pytest.raises(DataError, match=rf"split invalid: {re.escape(name)} has indices from -?\d+ to {len(Y)}"):
        bad.check_disjoint(len(Y))
    split.check_disjoint(len(Y))  # the untouched split is valid
