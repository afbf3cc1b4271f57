"""The small CNN of the digits example: ``examples.digits_cnn:make_cnn`` builds it (the audit's --factory)."""

from __future__ import annotations

import torch
from torch import nn


def make_cnn() -> nn.Module:
    """A CNN for 1 x 8 x 8 digit images, 10 classes, returning logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train_cnn(X: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int) -> nn.Module:
    """Train ``make_cnn()`` with Adam on (n, 1, 8, 8) images, long enough to memorise them."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    return model.eval()
