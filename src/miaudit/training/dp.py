"""DP-SGD as Opacus does it: Poisson sampling, per-example clipping, Gaussian noise, and its accounting.

One step of DP-SGD on a model trained on ``n`` records (Abadi et al. 2016; Opacus's ``DPDataLoader``
and ``DPOptimizer``, whose choices are copied here so that both train the same model):

1. **Poisson sampling.** Every record is in the step's batch independently with probability
   ``q = 1 / ceil(n / batch_size)`` (Opacus's ``DPDataLoader.from_data_loader``: one over the number
   of batches of the plain loader; ``batch_size / n`` when it divides ``n``); an epoch is
   ``int(1 / q)`` steps. Batch sizes vary, and may be 0.
2. **Clipping.** Each example's gradient ``g_b`` (of its own loss) is scaled by
   ``min(1, C / (||g_b|| + 1e-6))`` (:func:`clip_factors`), ``C = max_grad_norm``.
3. **Noise.** The clipped gradients are summed and ``N(0, (sigma * C)^2)`` noise is added to every
   coordinate of the sum.
4. **Scaling.** The sum is divided by the *expected* batch size ``int(n * q)`` (Opacus's
   ``expected_batch_size``), whatever the batch's real size; then the optimiser (Adam) steps.

Each model draws its batches from ``torch_generator(seed, "dp-sample")`` (one ``torch.rand(n)`` per
step, a record in when its number is below ``q``), its noise from :func:`noise_stream` (``n_parameters``
values per step in :func:`noise_layout`'s order; a counter-based stream, value ``i`` of step ``t`` a pure
function of the seed, ``t`` and ``i``: :mod:`miaudit.training.noise`) and its dropout masks, if any, from
``torch_generator(seed, "dropout", layer)``: both engines draw the same numbers.

Per-example norms without per-example gradients (:func:`per_example_sq_norms`): for a linear layer
``z = h W + b`` the example's weight gradient is the outer product ``h_b^T dz_b``, so
``||grad W_b||^2 = ||h_b||^2 ||dz_b||^2`` and ``||grad b_b||^2 = ||dz_b||^2``.

Accounting is Opacus's (the ``dp`` extra, imported lazily): :func:`noise_for_epsilon` calibrates sigma
to a target epsilon with ``get_noise_multiplier``, :func:`epsilon_spent` accounts a finished training.
Training itself never needs Opacus; a recipe with ``dp_noise_multiplier=0`` needs it not at all.

>>> sample_rate(3000, 64), steps_per_epoch(sample_rate(3000, 64)), expected_batch_size(3000, 1 / 47)
(0.02127659574468085, 47, 63)
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import torch

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, DataError
from miaudit.seeding import torch_generator
from miaudit.training.noise import noise_stream
from miaudit.training.specs import ACCOUNTANTS, ModelSpec, TrainSpec

__all__ = [
    "CLIP_EPS",
    "DPSchedule",
    "PrivacyRecord",
    "clip_factors",
    "dp_schedule",
    "epsilon_spent",
    "expected_batch_size",
    "noise_for_epsilon",
    "noise_layout",
    "noise_stream",
    "per_example_sq_norms",
    "poisson_masks",
    "privacy_record",
    "sample_generator",
    "sample_rate",
    "smoothed_targets",
    "steps_per_epoch",
]

logger = logging.getLogger(__name__)

#: added to a per-example norm before dividing, as Opacus's ``DPOptimizer.clip_and_accumulate``
CLIP_EPS = 1e-6


def sample_rate(n: int, batch_size: int) -> float:
    """Poisson sampling rate of a model trained on ``n`` records: ``1 / ceil(n / batch_size)``, as Opacus.

    >>> sample_rate(3000, 64), sample_rate(640, 64), sample_rate(10, 64)
    (0.02127659574468085, 0.1, 1.0)
    """
    if n < 1:
        raise DataError(f"DP-SGD needs a training set of at least one record; got n={n}")
    return 1 / math.ceil(n / batch_size)


def steps_per_epoch(rate: float) -> int:
    """Steps of one epoch at sampling rate ``rate``: ``int(1 / rate)``, as Opacus's sampler."""
    return int(1 / rate)


def expected_batch_size(n: int, rate: float) -> int:
    """What the summed gradient is divided by: ``int(n * rate)``, as Opacus's ``make_private`` (at least 1)."""
    return max(1, int(n * rate))


def _accountant(name: str) -> Any:
    if name not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(map(repr, ACCOUNTANTS))}; got {name!r}")
    require_extra("opacus", "dp")
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=name)


@functools.lru_cache(maxsize=256)
def epsilon_spent(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """The epsilon that ``steps`` DP-SGD steps spend at ``delta``, by Opacus's accountant ``accountant``.

    Parameters
    ----------
    noise_multiplier : float
        sigma (>= 0). 0 means no noise: the epsilon is infinite (Opacus is not asked).
    sample_rate : float
        Poisson sampling rate q in (0, 1].
    steps : int
        Steps taken.
    delta : float
        In (0, 1).
    accountant : {"rdp", "prv"}

    Returns
    -------
    float
        Epsilon (``math.inf`` without noise).
    """
    _check_accounting(sample_rate=sample_rate, steps=steps, delta=delta)
    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise ConfigError(f"noise_multiplier must be a finite number >= 0; got {noise_multiplier!r}")
    if noise_multiplier == 0:
        return math.inf
    acc = _accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")  # RDP's note on its range of orders
        return float(acc.get_epsilon(delta=float(delta)))


@functools.lru_cache(maxsize=256)
def noise_for_epsilon(
    *, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """The noise multiplier sigma that spends at most ``epsilon`` (within 0.01) in ``steps`` steps.

    Opacus's ``get_noise_multiplier`` (binary search with ``epsilon_tolerance=0.01``): the epsilon
    accounted with the returned sigma is at most ``epsilon`` and at least ``epsilon - 0.01``.

    Raises
    ------
    ConfigError
        The epsilon is too small for any noise up to 1e6, or Opacus is not installed.
    """
    _check_accounting(sample_rate=sample_rate, steps=steps, delta=delta)
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a positive finite number; got {epsilon!r}")
    _accountant(accountant)
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(
                get_noise_multiplier(
                    target_epsilon=float(epsilon),
                    target_delta=float(delta),
                    sample_rate=float(sample_rate),
                    steps=int(steps),
                    accountant=accountant,
                )
            )
    except ValueError as exc:
        raise ConfigError(
            f"cannot reach epsilon {epsilon} at delta {delta} in {steps} steps at sampling rate {sample_rate:.4g} "
            f"({exc}); raise dp_epsilon or dp_delta, or train fewer epochs"
        ) from exc


def _check_accounting(*, sample_rate: float, steps: int, delta: float) -> None:
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1]; got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1; got {steps!r}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1); got {delta!r}")


@dataclass(frozen=True)
class DPSchedule:
    """Everything DP-SGD needs to train one model on ``n`` records (picklable; no Opacus needed to use it).

    Attributes
    ----------
    n : int
        Training records.
    sample_rate : float
        Poisson sampling rate q.
    steps : int
        Steps in all: ``epochs * steps_per_epoch(q)``.
    expected_batch_size : int
        What the noisy sum of clipped gradients is divided by.
    noise_multiplier, max_grad_norm, delta : float
    accountant : str
    """

    n: int
    sample_rate: float
    steps: int
    expected_batch_size: int
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: str

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the sum of clipped gradients: ``sigma * C``."""
        return self.noise_multiplier * self.max_grad_norm


@functools.lru_cache(maxsize=1024)
def dp_schedule(train: TrainSpec, n: int) -> DPSchedule:
    """The DP-SGD schedule of a model trained with ``train`` on ``n`` records (noise calibrated if asked).

    Raises
    ------
    ConfigError
        The recipe has no DP-SGD, or (``dp_epsilon``) the epsilon cannot be reached or Opacus is missing.
    """
    if not train.dp:
        raise ConfigError("dp_schedule: the recipe trains without DP-SGD; set dp_epsilon or dp_noise_multiplier")
    q = sample_rate(n, train.batch_size)
    steps = train.epochs * steps_per_epoch(q)
    delta = train.dp_delta if train.dp_delta is not None else 1 / n
    if not delta < 1:
        raise ConfigError(f"the default dp_delta 1/n is 1 for a model trained on {n} record; set dp_delta below 1")
    if train.dp_noise_multiplier is not None:
        sigma = train.dp_noise_multiplier
    else:
        assert train.dp_epsilon is not None
        sigma = noise_for_epsilon(
            epsilon=train.dp_epsilon, delta=delta, sample_rate=q, steps=steps, accountant=train.dp_accountant
        )
    return DPSchedule(
        n=n,
        sample_rate=q,
        steps=steps,
        expected_batch_size=expected_batch_size(n, q),
        noise_multiplier=float(sigma),
        max_grad_norm=train.max_grad_norm,
        delta=float(delta),
        accountant=train.dp_accountant,
    )


@dataclass(frozen=True)
class PrivacyRecord:
    """The privacy a trained model's DP-SGD spent, as its accountant counts it.

    Attributes
    ----------
    epsilon : float
        Spent at ``delta`` (``inf`` when trained without noise).
    delta, noise_multiplier, sample_rate, max_grad_norm : float
    steps : int
    accountant : {"rdp", "prv"}
    """

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    accountant: str
    max_grad_norm: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (``epsilon`` ``inf`` as the string "inf")."""
        d = asdict(self)
        if math.isinf(self.epsilon):
            d["epsilon"] = "inf"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyRecord:
        """The inverse of :meth:`to_dict`; DataError naming what is missing or malformed."""
        try:
            return cls(
                epsilon=float(d["epsilon"]),
                delta=float(d["delta"]),
                noise_multiplier=float(d["noise_multiplier"]),
                sample_rate=float(d["sample_rate"]),
                steps=int(d["steps"]),
                accountant=str(d["accountant"]),
                max_grad_norm=float(d["max_grad_norm"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed privacy record {d!r}: {exc!r}; delete the stored model to retrain it") from exc


def privacy_record(schedule: DPSchedule) -> PrivacyRecord:
    """Account ``schedule``'s whole training: the :class:`PrivacyRecord` stored with the model."""
    eps = epsilon_spent(
        noise_multiplier=schedule.noise_multiplier,
        sample_rate=schedule.sample_rate,
        steps=schedule.steps,
        delta=schedule.delta,
        accountant=schedule.accountant,
    )
    return PrivacyRecord(
        epsilon=eps,
        delta=schedule.delta,
        noise_multiplier=schedule.noise_multiplier,
        sample_rate=schedule.sample_rate,
        steps=schedule.steps,
        accountant=schedule.accountant,
        max_grad_norm=schedule.max_grad_norm,
    )


# ------------------------------------------------------------------------------------------------
# the arithmetic of a step, shared by both engines
# ------------------------------------------------------------------------------------------------


def sample_generator(seed: int) -> torch.Generator:
    """A model's Poisson sampling stream."""
    return torch_generator(seed, "dp-sample")


def poisson_masks(gen: torch.Generator, n: int, rate: float, steps: int) -> torch.Tensor:
    """Which records each of the next ``steps`` steps samples: bool Tensor of shape (steps, n).

    One uniform number per record and step from ``gen`` (row-major: drawing (steps, n) at once or
    ``steps`` rows one at a time gives the same masks); a record is in when its number is below ``rate``.
    """
    return torch.rand(steps, n, generator=gen) < rate


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Per-example clipping factors ``min(1, C / (norm + 1e-6))``, as Opacus; same shape as ``norms``.

    >>> clip_factors(torch.tensor([0.5, 2.0, 0.0]), 1.0)
    tensor([1.0000, 0.5000, 1.0000])
    """
    return (max_grad_norm / (norms + CLIP_EPS)).clamp_(max=1.0)


def per_example_sq_norms(
    inputs: Sequence[torch.Tensor], output_grads: Sequence[torch.Tensor], *, bias: Sequence[bool]
) -> torch.Tensor:
    """Squared norms of each example's gradient over all linear layers, without per-example gradients.

    Parameters
    ----------
    inputs : sequence of Tensor of shape (..., batch, fan_in)
        Each layer's input ``h``.
    output_grads : sequence of Tensor of shape (..., batch, fan_out)
        The gradient of each example's own loss with respect to the layer's output ``z = h W + b``.
    bias : sequence of bool
        Whether each layer has a bias (adds ``||dz_b||^2``).

    Returns
    -------
    Tensor of shape (..., batch)
        ``sum_l (||h_lb||^2 + bias_l) * ||dz_lb||^2``.
    """
    total: torch.Tensor | None = None
    for h, dz, b in zip(inputs, output_grads, bias, strict=True):
        hsq = h.square().sum(-1)
        if b:
            hsq = hsq + 1.0
        term = hsq * dz.square().sum(-1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("per_example_sq_norms needs at least one layer")
    return total


def smoothed_targets(y: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    """Label-smoothed target distributions ``(1 - a) * onehot(y) + a / n_classes``: shape (n, n_classes).

    >>> smoothed_targets(torch.tensor([1]), 4, 0.2)
    tensor([[0.0500, 0.8500, 0.0500, 0.0500]])
    """
    out = torch.full((len(y), n_classes), smoothing / n_classes)
    out.scatter_add_(1, y.view(-1, 1), torch.full((len(y), 1), 1.0 - smoothing))
    return out


def noise_layout(spec: ModelSpec) -> list[tuple[int, tuple[int, ...]]]:
    """Where each parameter's noise lies in a model's noise vector: (offset, shape) per parameter.

    Layer by layer, the weight ``(fan_in, fan_out)`` (row-major) then the bias ``(fan_out,)``, as
    :class:`~miaudit.training.networks.MLPParams` holds them; ``spec.n_parameters`` numbers in all.
    """
    out: list[tuple[int, tuple[int, ...]]] = []
    off = 0
    for fan_in, fan_out in pairwise(spec.layer_sizes):
        out.append((off, (fan_in, fan_out)))
        off += fan_in * fan_out
        out.append((off, (fan_out,)))
        off += fan_out
    return out
