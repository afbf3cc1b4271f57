"""Early stopping on a validation split of each model's own training set: the split, the stopper, the record.

A recipe with ``early_stopping_patience`` set (:class:`~miaudit.training.specs.TrainSpec`) holds out
``validation_fraction`` of every model's training set, chosen from the model's seed
(:func:`validation_split`), and trains on the rest. At every epoch end the plain loop
(:func:`~miaudit.training.trainer.train_one`) evaluates the mean cross-entropy on the held-out records
(:func:`validation_loss`: no dropout, no label smoothing) and hands it to an :class:`EarlyStopper`,
which keeps a copy of the weights with the lowest loss so far and says when ``patience`` epochs have
passed without a lower one. The model returned has the kept weights ("restore best"); its
:class:`EarlyStoppingRecord` says which epoch they come from.

Membership: the held-out records are in the model's training set as the caller gave it, so an audit
counts them as members, yet the model never trained on them. That is what early stopping costs in data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.errors import DataError, TrainingError
from miaudit.seeding import make_rng
from miaudit.training.networks import mlp_logits

__all__ = ["EarlyStopper", "EarlyStoppingRecord", "validation_loss", "validation_size", "validation_split"]

logger = logging.getLogger(__name__)


def validation_size(n: int, fraction: float) -> int:
    """How many of ``n`` training records are held out: ``round(fraction * n)``, at least 1, at most ``n - 1``.

    >>> validation_size(3000, 0.1), validation_size(5, 0.1), validation_size(5, 0.99)
    (300, 1, 4)
    """
    if n < 2:
        raise DataError(
            f"early stopping holds out part of each training set and needs at least 2 records; got {n}. "
            "Pass a larger training set or turn early stopping off (early_stopping_patience=None)"
        )
    return min(n - 1, max(1, round(fraction * n)))


def validation_split(train_idx: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a model's training set into the records it trains on and the records it is validated on.

    Parameters
    ----------
    train_idx : ndarray of shape (n_train,)
        The model's training set (indices into the shared pool of records).
    fraction : float
        The share held out, in (0, 1); :func:`validation_size` records.
    seed : int
        The model's seed; the split draws from ``make_rng(seed, "validation")``, a stream no other
        step reads, so the model's initialisation and minibatch order are those of the same seed
        without early stopping.

    Returns
    -------
    fit : ndarray of shape (n_train - n_val,)
        The positions not held out, in their order in ``train_idx``.
    val : ndarray of shape (n_val,)
        The held-out positions, in their order in ``train_idx``. ``fit`` and ``val`` split the positions
        of ``train_idx``: disjoint, and together all of it.
    """
    train_idx = np.asarray(train_idx)
    n_val = validation_size(len(train_idx), fraction)
    held = np.zeros(len(train_idx), dtype=bool)
    held[make_rng(seed, "validation").permutation(len(train_idx))[:n_val]] = True
    return train_idx[~held], train_idx[held]


def validation_loss(
    X: torch.Tensor, y: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> float:
    """Mean cross-entropy of the MLP on the held-out records (inference: no dropout, no smoothing).

    Parameters
    ----------
    X : Tensor of shape (n_val, n_features), float32
    y : Tensor of shape (n_val,), int64
    weights, biases : sequences of Tensor
        ``weights[l]`` of shape (fan_in, fan_out), ``biases[l]`` of shape (fan_out,).
    """
    with torch.no_grad():
        return float(F.cross_entropy(mlp_logits(X, weights, biases), y))


@dataclass(frozen=True)
class EarlyStoppingRecord:
    """What early stopping did for one model.

    Attributes
    ----------
    best_epoch : int
        The epoch (1-based) whose weights the model kept: the one with the lowest validation loss.
    epochs_run : int
        Epochs trained before stopping (``epochs`` when patience never ran out).
    validation_losses : tuple of float
        The validation loss at the end of each epoch run, ``epochs_run`` of them.
    n_validation : int
        How many of the model's training records were held out.
    patience : int
    """

    best_epoch: int
    epochs_run: int
    validation_losses: tuple[float, ...]
    n_validation: int
    patience: int

    @property
    def best_loss(self) -> float:
        return self.validation_losses[self.best_epoch - 1]

    @property
    def stopped_early(self) -> bool:
        """Whether patience ran out before the last epoch of the recipe."""
        return self.epochs_run - self.best_epoch >= self.patience

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "validation_losses": list(self.validation_losses),
            "n_validation": self.n_validation,
            "patience": self.patience,
        }


class EarlyStopper:
    """Track the validation loss epoch by epoch; keep the best weights; say when to stop.

    Parameters
    ----------
    patience : int
        Stop after this many epochs in a row without a loss strictly lower than the best so far.
    n_validation : int
        Recorded in :meth:`record`.

    Non-finite losses never count as improvements.
    """

    def __init__(self, *, patience: int, n_validation: int) -> None:
        self.patience = patience
        self.n_validation = n_validation
        self.losses: list[float] = []
        self.best_epoch = 0
        self.best_loss = math.inf
        self.best: list[torch.Tensor] = []

    def update(self, loss: float, tensors: Sequence[torch.Tensor]) -> bool:
        """Record the loss of the epoch just finished (a copy of ``tensors`` if it is the best); True: stop."""
        self.losses.append(loss)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, len(self.losses)
            self.best = [t.detach().clone() for t in tensors]
        return len(self.losses) - self.best_epoch >= self.patience

    def record(self) -> EarlyStoppingRecord:
        if not self.best:
            raise TrainingError(
                f"the validation loss was never finite ({self.losses}); lower the learning rate or check the data"
            )
        return EarlyStoppingRecord(
            best_epoch=self.best_epoch,
            epochs_run=len(self.losses),
            validation_losses=tuple(self.losses),
            n_validation=self.n_validation,
            patience=self.patience,
        )
