"""Tests written to kill mutants of DP-SGD's shared arithmetic that the other tests let survive."""

from __future__ import annotations

import torch

from miaudit.training.dp import per_example_sq_norms


def test_per_example_norms_of_stacked_models_are_each_models_own() -> None:
    """Leading dimensions (a stack of models) are kept: the sum runs over the last axis only."""
    g = torch.Generator().manual_seed(0)
    K, B = 3, 5
    hs = [torch.randn(K, B, 7, generator=g), torch.randn(K, B, 4, generator=g)]
    dzs = [torch.randn(K, B, 4, generator=g), torch.randn(K, B, 2, generator=g)]
    stacked = per_example_sq_norms(hs, dzs, bias=[True, False])
    assert stacked.shape == (K, B)
    for k in range(K):
        alone = per_example_sq_norms([h[k] for h in hs], [dz[k] for dz in dzs], bias=[True, False])
        torch.testing.assert_close(stacked[k], alone)
    # by hand for one example: (||h||^2 + 1) ||dz||^2 + ||h'||^2 ||dz'||^2
    want = (hs[0][1, 2].square().sum() + 1) * dzs[0][1, 2].square().sum()
    want = want + hs[1][1, 2].square().sum() * dzs[1][1, 2].square().sum()
    torch.testing.assert_close(stacked[1, 2], want)
