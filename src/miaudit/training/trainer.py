"""The one training interface, and the plain one-model-at-a-time loop behind it.

:func:`train_models` trains one model per training set, each with its own seed, through the
batched engine when it supports the recipe and through :func:`train_one` (a plain PyTorch loop)
otherwise. Defences (dropout, weight decay, label smoothing, early stopping, DP-SGD) are arguments
of the recipe, not copies of the loop. Early stopping (:mod:`miaudit.training.early_stopping`) runs
only in the loop: ``engine="auto"`` trains such recipes with it, one model per job on the executor.

Randomness: a model's seed determines its initialisation, minibatch order and dropout masks (with
DP-SGD also its Poisson samples and noise, :mod:`miaudit.training.dp`; with early stopping also its
validation split); no global random state is read or written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.seeding import check_seed, torch_generator
from miaudit.training.dp import (
    DPSchedule,
    clip_factors,
    dp_schedule,
    noise_layout,
    noise_stream,
    poisson_masks,
    privacy_record,
    sample_generator,
    smoothed_targets,
)
from miaudit.training.early_stopping import EarlyStopper, EarlyStoppingRecord, validation_loss, validation_split
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.hardware import flush_denormals
from miaudit.training.networks import MLPParams, init_params, shared_tensor
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = [
    "ProgressCallback",
    "check_training_data",
    "resolve_engine",
    "train_models",
    "train_one",
    "train_one_with_record",
]

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

    :func:`train_one_with_record` without the early-stopping record; the parameters are the same.
    """
    return train_one_with_record(X, y, train_idx, seed=seed, model=model, train=train)[0]


@flush_denormals()  # Adam's moments decay into denormals; flushing them keeps epochs fast (restored after)
def train_one_with_record(
    X: torch.Tensor,
    y: torch.Tensor,
    train_idx: np.ndarray,
    *,
    seed: int,
    model: ModelSpec,
    train: TrainSpec,
) -> tuple[MLPParams, EarlyStoppingRecord | None]:
    """Train one MLP with a plain PyTorch loop (Adam, cross-entropy, minibatches).

    Parameters
    ----------
    X : Tensor of shape (n_records, n_features), float32
        The shared pool of records.
    y : Tensor of shape (n_records,), int64
    train_idx : ndarray of shape (n_train,)
        Indices into X of this model's training set.
    seed : int
        Fixes the initialisation, minibatch order and dropout masks (with DP-SGD, also the Poisson
        samples and the noise).

    With DP-SGD (``train.dp``) the model is trained by :func:`_train_dp` and carries its
    :class:`~miaudit.training.dp.PrivacyRecord`. With early stopping (``train.early_stopping``) the model
    trains on the records :func:`~miaudit.training.early_stopping.validation_split` leaves it, is
    validated on the others at every epoch end, stops when its patience runs out and keeps the weights
    of its lowest validation loss; the record says which epoch that was.

    Returns
    -------
    params : MLPParams
    record : EarlyStoppingRecord or None
        None without early stopping.
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
    if train.dp:
        schedule = dp_schedule(train, n)
        record = privacy_record(schedule)  # before training: a missing accountant fails at once
        _train_dp(X, y, idx, params, opt, seed=seed, model=model, train=train, schedule=schedule)
        return MLPParams(
            spec=model,
            weights=tuple(w.detach().numpy().copy() for w in weights),
            biases=tuple(b.detach().numpy().copy() for b in biases),
            privacy=record,
        ), None
    stopper: EarlyStopper | None = None
    if train.early_stopping_patience is not None:
        fit, val = validation_split(idx.numpy(), fraction=train.validation_fraction, seed=seed)
        idx, n = torch.from_numpy(fit), len(fit)
        X_val, y_val = X[torch.from_numpy(val)], y[torch.from_numpy(val)]
        stopper = EarlyStopper(patience=train.early_stopping_patience, n_validation=len(val))
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
            loss = F.cross_entropy(h, y[batch], label_smoothing=train.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not torch.isfinite(loss):
            raise TrainingError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower the learning rate")
        if stopper is not None and stopper.update(validation_loss(X_val, y_val, weights, biases), params):
            break
    es_record = None
    if stopper is not None:
        es_record = stopper.record()
        weights, biases = stopper.best[0::2], stopper.best[1::2]  # params interleave weight, bias per layer
        logger.info(
            "early stopping kept epoch %d of %d run (validation loss %.4f on %d held-out records)",
            es_record.best_epoch,
            es_record.epochs_run,
            es_record.best_loss,
            es_record.n_validation,
        )
    return MLPParams(
        spec=model,
        weights=tuple(w.detach().numpy().copy() for w in weights),
        biases=tuple(b.detach().numpy().copy() for b in biases),
    ), es_record


def _train_dp(
    X: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    params: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    *,
    seed: int,
    model: ModelSpec,
    train: TrainSpec,
    schedule: DPSchedule,
) -> None:
    """DP-SGD in plain PyTorch (see :mod:`miaudit.training.dp`): per-example gradients with ``torch.func``.

    Each step: a Poisson sample of the model's records, every example's gradient of its own
    (label-smoothed) loss, clipped to ``max_grad_norm``, summed, Gaussian noise from the model's noise
    stream added, divided by the expected batch size, then Adam. ``params`` are updated in place.
    """
    n, n_layers, keep = len(idx), len(params) // 2, 1.0 - model.dropout
    samples, noise = sample_generator(seed), noise_stream(seed)
    drop_gens = [torch_generator(seed, "dropout", i) for i in range(len(model.hidden))] if model.dropout > 0 else []
    layout = noise_layout(model)
    noise_buf = torch.empty(model.n_parameters)
    fill_noise = noise.bind(noise_buf, 1.0)

    def example_loss(ps: tuple[torch.Tensor, ...], x: torch.Tensor, t: torch.Tensor, masks: tuple) -> torch.Tensor:
        h = x
        for i in range(n_layers):
            h = h @ ps[2 * i] + ps[2 * i + 1]
            if i < n_layers - 1:
                h = torch.relu(h)
                if masks:
                    h = h * masks[i]
        return -(t * torch.log_softmax(h, dim=-1)).sum()

    per_example = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0, 0, 0))
    per_epoch = max(1, schedule.steps // train.epochs)
    for step in range(schedule.steps):
        rows = idx[poisson_masks(samples, n, schedule.sample_rate, 1)[0]]
        b = len(rows)
        masks = tuple(
            (torch.rand(b, width, generator=g) < keep).float().div_(keep)
            for g, width in zip(drop_gens, model.hidden, strict=False)
        )
        if b:
            targets = smoothed_targets(y[rows], model.n_classes, train.label_smoothing)
            with torch.no_grad():
                grads = per_example(tuple(p.detach() for p in params), X[rows], targets, masks)
            norms = torch.stack([g.reshape(b, -1).norm(2, dim=-1) for g in grads], dim=1).norm(2, dim=1)
            factor = clip_factors(norms, schedule.max_grad_norm)
            summed = [torch.einsum("i,i...", factor, g) for g in grads]
        else:
            summed = [torch.zeros_like(p) for p in params]
        if schedule.noise_std > 0:
            fill_noise(step)
            for s, (off, shape) in zip(summed, layout, strict=True):
                s.add_(noise_buf[off : off + s.numel()].view(shape), alpha=schedule.noise_std)
        for p, s in zip(params, summed, strict=True):
            p.grad = s.div_(schedule.expected_batch_size)
        opt.step()
        if (step + 1) % per_epoch == 0 and not all(bool(torch.isfinite(p).all()) for p in params):
            raise TrainingError(
                f"training diverged (non-finite weights) after {step + 1} DP-SGD steps; lower the learning rate"
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
        results. The plain loop (``train.engine == "loop"``) trains in this process and takes none;
        early-stopping recipes with ``engine="auto"`` train in the loop, one model per job on the
        executor (default: in-process threads, one torch thread each).

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
    engine = resolve_engine(train)
    if executor is not None and train.engine == "loop":
        raise ConfigError(
            "the loop engine trains one model at a time in this process and cannot use an executor; use "
            "engine='batched' or 'auto' to train on an executor (a Dask cluster), or pass no executor"
        )
    logger.info("training %d %s models with the %s engine", len(train_sets), model.name, engine)
    if engine == "loop" and train.device != "cpu":  # early stopping: only the loop runs it, on the CPU
        logger.info("early stopping trains in the plain loop, on the CPU (device %r is for the batched engine)",
                    train.device)  # fmt: skip
    if engine == "batched":
        from miaudit.training.batched import train_batched

        return train_batched(
            X, y, train_sets, seeds=seeds, model=model, train=train, progress=progress, executor=executor
        )
    if train.engine != "loop":  # early stopping, which only the loop runs: one model per job on the executor
        return _train_loop_jobs(X, y, train_sets, seeds=seeds, model=model, train=train, progress=progress,
                                executor=executor)  # fmt: skip
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


def resolve_engine(train: TrainSpec) -> str:
    """The engine that trains ``train``: ``loop`` when asked for or for early stopping (which only the loop
    runs), otherwise ``batched``, which supports every other recipe."""
    return "loop" if train.engine == "loop" or train.early_stopping else "batched"


@dataclass(frozen=True, eq=False)
class LoopJob:
    """One model for the plain loop, as a picklable job for an executor.

    ``X`` and ``y`` are the same objects in every job of one call (only the records some model trains
    on), so a distributed executor sends them once; ``train_idx`` indexes them.
    """

    X: np.ndarray
    y: np.ndarray
    train_idx: np.ndarray
    seed: int
    model: ModelSpec
    train: TrainSpec


def train_loop_job(job: LoopJob) -> MLPParams:
    """Run one :class:`LoopJob` (through an executor, which gives it one torch thread)."""
    X, y = _as_tensors(job.X, job.y)
    return train_one(X, y, job.train_idx, seed=job.seed, model=job.model, train=job.train)


def _train_loop_jobs(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    model: ModelSpec,
    train: TrainSpec,
    progress: ProgressCallback | None,
    executor: Executor | None,
) -> list[MLPParams]:
    """The loop for each model as one job on ``executor``; results as :func:`train_one` on the full X gives.

    The rows of a model's minibatches are the same records in the same order, whether gathered from X
    or from the pool of used records, so only the thread count can change the arithmetic.
    """
    sets = [np.asarray(s, dtype=np.int64) for s in train_sets]
    if not sets:
        return []
    used, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    local = np.split(inverse.astype(np.int64), np.cumsum([len(s) for s in sets])[:-1])
    X_used, y_used = np.ascontiguousarray(X[used]), np.ascontiguousarray(y[used])
    jobs = [
        LoopJob(X=X_used, y=y_used, train_idx=idx, seed=int(seed), model=model, train=train)
        for idx, seed in zip(local, seeds, strict=True)
    ]
    executor = executor if executor is not None else InProcessExecutor()
    done = 0

    def on_done(i: int, result: MLPParams) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(jobs))

    return executor.map(train_loop_job, jobs, on_done=on_done)
