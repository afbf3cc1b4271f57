"""The one training interface, and the plain one-model-at-a-time loop behind it.

:func:`train_models` trains one model per training set, each with its own seed, through the
batched engine when it supports the recipe and through :func:`train_one` (a plain PyTorch loop)
otherwise. Defences (dropout, weight decay) are arguments of the recipe, not copies of the loop.

Randomness: a model's seed determines its initialisation, minibatch order and dropout masks; no
global random state is read or written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.seeding import check_seed, torch_generator
from miaudit.training.executors import Executor
from miaudit.training.hardware import flush_denormals
from miaudit.training.networks import MLPParams, init_params, shared_tensor
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["ProgressCallback", "check_training_data", "train_models", "train_one"]

logger = logging.getLogger(__name__)

#: ``progress(n_done, n_total)``, called after each finished model (or chunk of models).
ProgressCallback = Callable[[int, int], None]


def check_training_data(X: np.ndarray, y: np.ndarray, model: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Validate X and y against the model spec; return float32 X and int64 y."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.n_features:
        raise DataError(
            f"X must have shape (n_samples, {model.n_features}) for this model; got {X.shape}. "
            "Flatten images and check the dataset matches the model spec."
        )
    if y.shape != (len(X),):
        raise DataError(f"y must have shape ({len(X)},) to match X; got {y.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"X contains {int((~np.isfinite(X)).sum())} NaN or infinite values; clean the data first")
    if y.size and (y.min() < 0 or y.max() >= model.n_classes or not np.all(np.equal(np.mod(y, 1), 0))):
        raise DataError(f"labels must be integers in [0, {model.n_classes - 1}]; got range [{y.min()}, {y.max()}]")
    return X, y.astype(np.int64, copy=False)


@flush_denormals()  # Adam's moments decay into denormals; flushing them keeps epochs fast (restored after)
def train_one(
    X: torch.Tensor,
    y: torch.Tensor,
    train_idx: np.ndarray,
    *,
    seed: int,
    model: ModelSpec,
    train: TrainSpec,
) -> MLPParams:
    """Train one MLP with a plain PyTorch loop (Adam, cross-entropy, minibatches).

    Parameters
    ----------
    X : Tensor of shape (n_records, n_features), float32
        The shared pool of records.
    y : Tensor of shape (n_records,), int64
    train_idx : ndarray of shape (n_train,)
        Indices into X of this model's training set.
    seed : int
        Fixes the initialisation, minibatch order and dropout masks.
    """
    seed = check_seed(seed)
    gen = torch_generator(seed, "train")
    weights, biases = init_params(model, gen)
    params = [p.requires_grad_() for pair in zip(weights, biases, strict=True) for p in pair]
    opt = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    idx = torch.as_tensor(np.asarray(train_idx, dtype=np.int64))
    n = len(idx)
    if n == 0:
        raise DataError("a training set is empty; every model needs at least one record")
    keep = 1.0 - model.dropout
    n_layers = len(weights)
    for epoch in range(train.epochs):
        order = idx[torch.randperm(n, generator=gen)]
        for start in range(0, n, train.batch_size):
            batch = order[start : start + train.batch_size]
            h = X[batch]
            for i in range(n_layers):
                h = h @ weights[i] + biases[i]
                if i < n_layers - 1:
                    h = torch.relu(h)
                    if model.dropout > 0:
                        mask = torch.bernoulli(torch.full_like(h, keep), generator=gen)
                        h = h * mask / keep
            loss = F.cross_entropy(h, y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not torch.isfinite(loss):
            raise TrainingError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower the learning rate")
    return MLPParams(
        spec=model,
        weights=tuple(w.detach().numpy().copy() for w in weights),
        biases=tuple(b.detach().numpy().copy() for b in biases),
    )


def train_models(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    model: ModelSpec,
    train: TrainSpec,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> list[MLPParams]:
    """Train one model per training set.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_features)
        The shared pool of records (float, finite).
    y : ndarray of shape (n_records,)
        Integer labels in [0, n_classes).
    train_sets : sequence of ndarray of shape (n_train_k,)
        For each model, the indices into X of its training set; sizes may differ.
    seeds : sequence of int
        One seed per model (derive them with :func:`miaudit.seeding.derive_seed`).
    model, train : ModelSpec, TrainSpec
    progress : callable, optional
        Called as ``progress(n_done, n_total)`` as models finish.
    executor : Executor, optional
        Who runs the batched engine's chunks of models: default the in-process executor on all cores;
        :class:`~miaudit.training.distributed.DaskExecutor` trains them on a Dask cluster, with the same
        results. The plain loop (``train.engine == "loop"``) trains in this process and takes none.

    Returns
    -------
    list of MLPParams, one per training set, in order.
    """
    X, y = check_training_data(X, y, model)
    if len(seeds) != len(train_sets):
        raise ValueError(f"need one seed per training set: {len(train_sets)} sets, {len(seeds)} seeds")
    for k, s in enumerate(train_sets):
        s = np.asarray(s)
        if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= len(X))):
            raise DataError(f"train_sets[{k}] must be a 1-d array of indices into X (0..{len(X) - 1})")
    engine = _choose_engine(train)
    if executor is not None and engine == "loop":
        raise ConfigError(
            "the loop engine trains one model at a time in this process and cannot use an executor; use "
            "engine='batched' or 'auto' to train on an executor (a Dask cluster), or pass no executor"
        )
    logger.info("training %d %s models with the %s engine", len(train_sets), model.name, engine)
    if engine == "batched":
        from miaudit.training.batched import train_batched

        return train_batched(
            X, y, train_sets, seeds=seeds, model=model, train=train, progress=progress, executor=executor
        )
    Xt, yt = _as_tensors(X, y)
    out = []
    for k, (s, seed) in enumerate(zip(train_sets, seeds, strict=True)):
        out.append(train_one(Xt, yt, np.asarray(s), seed=seed, model=model, train=train))
        if progress is not None:
            progress(k + 1, len(train_sets))
    return out


def _as_tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Share memory with (possibly read-only) arrays; training only ever reads them."""
    return shared_tensor(X), shared_tensor(y)


def _choose_engine(train: TrainSpec) -> str:
    """``loop`` when asked for; otherwise the batched engine, which supports every recipe we have."""
    return "loop" if train.engine == "loop" else "batched"
