from __future__ import annotations

import numpy as np
import pytest

from miaudit.seeding import check_seed, derive_seed, make_rng, torch_generator


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    a = make_rng(7, "shadow", 2).random(5)
    b = make_rng(7, "shadow", 2).random(5)
    c = make_rng(8, "shadow", 2).random(5)
    d = make_rng(7, "shadow", 3).random(5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, d)


def test_torch_generator_is_seeded() -> None:
    import torch

    x = torch.rand(4, generator=torch_generator(1, "x"))
    y = torch.rand(4, generator=torch_generator(1, "x"))
    z = torch.rand(4, generator=torch_generator(2, "x"))
    assert torch.equal(x, y)
    assert not torch.equal(x, z)


def test_derive_seed_range_and_keys() -> None:
    seeds = {derive_seed(0, "shadow", k) for k in range(100)}
    assert len(seeds) == 100
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(0, "a") != derive_seed(0, "b")


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_bad_seeds_are_rejected(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="seed must be"):
        check_seed(bad)


def test_bad_key_is_rejected() -> None:
    with pytest.raises(TypeError, match="seed keys must be str or int"):
        derive_seed(0, 1.5)  # type: ignore[arg-type]
