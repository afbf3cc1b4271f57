"""A model's minibatch schedule: its own epochs, each a fresh permutation from its seed.

Both paths of the engine draw batches from a :class:`MinibatchStream` made with the model's
``torch_generator(seed, "train")`` right after its initialisation, in the same order as the plain
loop (:func:`miaudit.training.trainer.train_one`), so a model gets the plain loop's batches. The
last, short batch of each epoch is padded to ``batch`` rows with zero weight: the loss is the mean
over its real rows, exactly as a short batch alone.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["MinibatchStream"]


class MinibatchStream:
    """One model's minibatches: its own epochs, each a fresh permutation, short batches padded.

    Parameters
    ----------
    idx : ndarray of shape (n_train,), int64
        The model's rows of the pool.
    gen : torch.Generator
        The model's training stream (already used for its initialisation).
    epochs, batch : int

    Attributes
    ----------
    total : int
        Steps in all: ``epochs * ceil(n_train / batch)``.
    """

    def __init__(self, idx: np.ndarray, gen: torch.Generator, epochs: int, batch: int) -> None:
        self.idx = torch.from_numpy(idx)
        self.gen, self.batch = gen, batch
        n = len(idx)
        self.per_epoch = -(-n // batch)
        self.total = epochs * self.per_epoch
        pad = self.per_epoch * batch - n
        self.weights = torch.full((self.per_epoch, batch), 1.0 / batch)
        if pad:
            last = batch - pad
            self.weights[-1, :last] = 1.0 / last
            self.weights[-1, last:] = 0.0
        self.pad = pad
        self.taken = 0
        self._epoch: torch.Tensor | None = None

    def take(self, n_steps: int, out_idx: torch.Tensor, out_w: torch.Tensor) -> None:
        """Write the next ``n_steps`` batches: rows into ``out_idx`` and row weights into ``out_w``.

        Parameters
        ----------
        n_steps : int
        out_idx : Tensor of shape (n_steps, batch), int64
        out_w : Tensor of shape (n_steps, batch), float32
            1 / (real rows of the batch) on real rows, 0 on padding rows.
        """
        row = 0
        epoch = self._epoch
        while row < n_steps:
            pos = self.taken % self.per_epoch
            if pos == 0 or epoch is None:
                order = self.idx[torch.randperm(len(self.idx), generator=self.gen)]
                if self.pad:
                    order = torch.cat([order, torch.zeros(self.pad, dtype=order.dtype)])
                epoch = self._epoch = order.view(self.per_epoch, self.batch)
            n = min(n_steps - row, self.per_epoch - pos)
            out_idx[row : row + n] = epoch[pos : pos + n]
            out_w[row : row + n] = self.weights[pos : pos + n]
            row += n
            self.taken += n
