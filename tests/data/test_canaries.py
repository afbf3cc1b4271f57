"""Canaries: shapes, labels that differ from the source's, values in range, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.data.canaries import CANARY_KINDS, make_canaries
from miaudit.errors import ConfigError, DataError


def _data(n: int = 200, d: int = 6, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = (rng.random((n, d)) * np.arange(1, d + 1)).astype(np.float32)  # feature j in [0, j + 1)
    return X, rng.integers(0, c, size=n)


def test_flip_changes_every_label_uniformly_among_the_others() -> None:
    X, y = _data(n=3000)
    Xc, yc = make_canaries(X, y, 3000, kind="flip", n_classes=4, seed=1)
    assert Xc.shape == (3000, 6) and Xc.dtype == np.float32 and yc.shape == (3000,) and yc.dtype == np.int64
    # every canary is a real record (distinct sources), its label another class
    rows = {r.tobytes(): i for i, r in enumerate(X)}
    source = np.array([rows[r.tobytes()] for r in Xc])
    assert len(set(source.tolist())) == 3000
    assert (yc != y[source]).all()
    assert ((yc >= 0) & (yc < 4)).all()
    # uniform among the 3 other classes: each shift 1, 2, 3 about a third of the time
    shares = np.bincount((yc - y[source]) % 4, minlength=4)[1:] / 3000
    np.testing.assert_allclose(shares, 1 / 3, atol=0.04)


def test_ood_fills_the_value_range_with_random_labels() -> None:
    X, y = _data()
    Xc, yc = make_canaries(X, y, 500, kind="ood", n_classes=4, seed=1)
    assert Xc.shape == (500, 6) and Xc.dtype == np.float32 and yc.dtype == np.int64
    assert (Xc >= X.min(axis=0)).all() and (Xc <= X.max(axis=0)).all()
    assert Xc[:, 5].max() > 5.0 > Xc[:, 0].max()  # per feature ranges
    assert set(np.unique(yc).tolist()) == {0, 1, 2, 3}
    assert not np.isin(Xc[:, 0], X[:, 0]).any()  # not records of the data


@pytest.mark.parametrize("kind", CANARY_KINDS)
def test_same_seed_same_canaries_other_seed_other(kind: str) -> None:
    X, y = _data()
    a = make_canaries(X, y, 5, kind=kind, n_classes=4, seed=3)
    b = make_canaries(X, y, 5, kind=kind, n_classes=4, seed=3)
    c = make_canaries(X, y, 5, kind=kind, n_classes=4, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_canaries_do_not_alias_the_data() -> None:
    X, y = _data()
    Xc, _ = make_canaries(X, y, 3, kind="flip", n_classes=4, seed=0)
    Xc[:] = -1
    assert (X >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "noise"}, ConfigError, "canary kind must be one of 'flip', 'ood'; got 'noise'"),
        ({"n": 0}, ConfigError, "number of canaries must be an integer >= 1"),
        ({"n": 2.0}, ConfigError, "number of canaries must be an integer >= 1"),
        ({"n_classes": 1}, ConfigError, "n_classes must be an integer >= 2"),
        ({"n": 201}, DataError, "asked for 201 flipped-label canaries from 200 records"),
        ({"n_classes": 3}, DataError, r"integer labels in \[0, 2\]"),
    ],
)
def test_errors(kwargs: dict, error: type, match: str) -> None:
    X, y = _data()
    args = {"n": 2, "kind": "flip", "n_classes": 4, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        make_canaries(X, y, **args)


def test_data_errors() -> None:
    X, y = _data()
    with pytest.raises(DataError, match="X must have shape"):
        make_canaries(X[0], y, 1, kind="ood", n_classes=4, seed=0)
    with pytest.raises(DataError, match="X must have shape"):
        make_canaries(X, y[:-1], 1, kind="ood", n_classes=4, seed=0)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="finite numbers"):
        make_canaries(bad, y, 1, kind="ood", n_classes=4, seed=0)
    with pytest.raises(DataError, match="integer labels"):
        make_canaries(X, y.astype(float), 1, kind="flip", n_classes=4, seed=0)
