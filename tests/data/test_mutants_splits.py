"""Split details that mutation testing showed no test pinned: every field normalised, the fingerprint's format."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from miaudit.data.splits import MembershipSplit, make_split
from miaudit.errors import DataError


def _split(**fields) -> MembershipSplit:
    base = {
        "target_in": [0, 1],
        "target_out": [2, 3],
        "shadow_in": ([4],),
        "shadow_out": ([5],),
        "population": [4, 5, 6],
        "seed": 3,
    }
    return MembershipSplit(**{**base, **fields})


def test_every_index_set_becomes_read_only_int64() -> None:
    split = _split(population=np.array([4, 5, 6], dtype=np.int32))
    arrays = {
        "target_in": split.target_in,
        "target_out": split.target_out,
        "shadow_in[0]": split.shadow_in[0],
        "shadow_out[0]": split.shadow_out[0],
        "population": split.population,
    }
    for name, a in arrays.items():
        assert isinstance(a, np.ndarray), name
        assert a.dtype == np.int64, name
        assert not a.flags.writeable, name
    assert split.population.tolist() == [4, 5, 6]


def test_population_of_non_integers_is_rejected() -> None:
    with pytest.raises(DataError, match="population must hold integer record indices"):
        _split(population=[4.0, 5.0])


def test_seed_is_checked_and_stored_as_a_plain_int() -> None:
    split = _split(seed=np.int64(7))
    assert type(split.seed) is int and split.seed == 7
    assert json.loads(json.dumps(split.to_dict()))["seed"] == 7
    with pytest.raises(ValueError, match="seed must be between 0 and 2"):
        _split(seed=-1)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        _split(seed=1.5)


def test_fingerprint_is_the_sha256_of_the_compact_json_record() -> None:
    # the fingerprint keys caches across versions: its format is part of the contract
    split = make_split(np.arange(40) % 2, target_size=5, n_shadows=1, shadow_train_size=4, shadow_test_size=4, seed=1)
    compact = json.dumps(split.to_dict(), separators=(",", ":"))
    assert split.fingerprint() == hashlib.sha256(compact.encode()).hexdigest()
    assert MembershipSplit.from_dict(split.to_dict()).fingerprint() == split.fingerprint()
    other = make_split(np.arange(40) % 2, target_size=5, n_shadows=1, shadow_train_size=4, shadow_test_size=4, seed=2)
    assert other.fingerprint() != split.fingerprint()
