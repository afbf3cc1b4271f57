"""Auditing a privacy claim: an empirical lower bound on epsilon from many training runs with canaries.

The flow follows Jagielski et al. (2020) and Nasr et al. (2021), with the batched engine training the
many models cheaply:

1. A base training set D of ``train_size`` records is drawn from the data (seeded); the same D is
   used by every model, so models differ only in the canaries they hold and their own seeds.
2. ``n_canaries`` canaries are made (:func:`miaudit.data.canaries.make_canaries`: flipped labels
   from records outside D, or out-of-distribution noise).
3. Each canary is inserted into its own random half of the ``n_models`` training runs (exactly half,
   seeded, independently across canaries), so a model holds D plus some of the canaries. For canary c
   a trial compares D ∪ S with D ∪ S ∪ {c} (S: the other canaries the model holds), two neighbouring
   training sets, which is what an (epsilon, delta) claim is about. (Inserting all canaries together
   would compare sets differing in ``n_canaries`` records, a group-privacy claim.)
4. The membership score of a canary on a model is minus its loss (cross-entropy) in the model's answer
   (a black-box query): a model that holds the canary fits its odd label. Jagielski et al. use the
   loss as the simplest strong test for one record. With several canaries, each canary's scores are
   standardised by its non-member trials of the threshold-choosing part (LiRA's offline
   normalisation), so that easy and hard canaries share one threshold.
5. One trial per model and canary: the scores of the trials go to
   :func:`miaudit.privacy.epsilon_lower_bound_from_scores`, which chooses the threshold on one random
   part of the trials and computes the bound on the rest.

Independence: trials of one canary are independent (independent seeds and inclusion draws with D
fixed). Trials of different canaries on the same model share that model's training run; the
Clopper-Pearson intervals treat them as independent, an assumption common in practice but not proven
here. ``n_canaries=1`` (the default) needs no such assumption.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from miaudit.attacks.signals import cross_entropy
from miaudit.data.canaries import CANARY_KINDS, make_canaries
from miaudit.errors import ConfigError, DataError
from miaudit.privacy import epsilon_lower_bound_from_scores
from miaudit.seeding import check_seed, derive_seed, make_rng
from miaudit.targets.local import as_target
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import ProgressCallback, check_training_data, train_models

__all__ = ["AUDIT_ATTACK", "PrivacyAuditResult", "audit_privacy"]

logger = logging.getLogger(__name__)

#: the membership test of the audit: minus the canary's cross-entropy loss
AUDIT_ATTACK = "loss"

#: ``trainer(X, y, train_sets, *, seeds, model, train, progress) -> models with predict_proba``
Trainer = Callable[..., Sequence[Any]]


@dataclass(frozen=True)
class PrivacyAuditResult:
    """The outcome of :func:`audit_privacy`.

    Attributes
    ----------
    epsilon_lb : float
        The empirical lower bound on epsilon (holds with probability >= 1 - alpha if the training is
        (epsilon, delta)-DP and the trials are independent).
    alpha, delta : float
        The confidence parameter and the delta the bound is computed at.
    n_trials : int
        Trials in all (``n_models * n_canaries``); half choose the threshold, half certify the bound.
    counts : dict
        ``tp``, ``fp``, ``fn``, ``tn`` of the evaluation trials.
    epsilon_claimed : float or None
        The claim tested, as given.
    epsilon_accounted : float or None
        The largest epsilon the models' DP-SGD accountant recorded (None without DP-SGD).
    consistent : bool or None
        ``epsilon_lb <= epsilon_claimed`` (or the accountant's epsilon when no claim is given); None
        when there is nothing to compare with. False disproves the claim at confidence 1 - alpha.
    attack, canary_kind : str
        The membership test (``"loss"``) and the canaries (``"flip"`` or ``"ood"``).
    threshold : float
        Trials with ``-loss >= threshold`` were guessed members.
    n_models, n_canaries : int
    """

    epsilon_lb: float
    alpha: float
    delta: float
    n_trials: int
    counts: dict[str, int]
    epsilon_claimed: float | None
    epsilon_accounted: float | None
    consistent: bool | None
    attack: str
    canary_kind: str
    threshold: float
    n_models: int
    n_canaries: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record."""
        return asdict(self)


def _check_int(name: str, value: object, *, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum} ({hint}); got {value!r}")
    return int(value)


def _check_claim(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value) >= 0:
        raise ConfigError(f"epsilon_claimed must be a number >= 0 (or None); got {value!r}")
    return float(value)


def _inclusion(n_canaries: int, n_models: int, seed: int) -> np.ndarray:
    """bool ndarray of shape (n_canaries, n_models): each canary in its own random half of the models."""
    member = np.zeros((n_canaries, n_models), dtype=bool)
    for c in range(n_canaries):
        member[c, make_rng(seed, "privacy_audit", "inclusion", c).permutation(n_models)[: n_models // 2]] = True
    return member


def _accounted(models: Sequence[Any]) -> tuple[float | None, float | None]:
    """The largest recorded epsilon and delta of the models' DP-SGD accounting, or (None, None)."""
    records: list[Any] = [getattr(m, "privacy", None) for m in models]
    if not records or any(r is None for r in records):
        return None, None
    return max(float(r.epsilon) for r in records), max(float(r.delta) for r in records)


def audit_privacy(
    X: np.ndarray,
    y: np.ndarray,
    *,
    train_size: int,
    model: ModelSpec,
    train: TrainSpec,
    n_models: int = 64,
    n_canaries: int = 1,
    canary_kind: str = "flip",
    delta: float | None = None,
    alpha: float = 0.05,
    threshold_fraction: float = 0.5,
    seed: int,
    trainer: Trainer = train_models,
    epsilon_claimed: float | None = None,
    progress: ProgressCallback | None = None,
) -> PrivacyAuditResult:
    """Train ``n_models`` models with and without canaries and bound epsilon from below.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_features)
    y : ndarray of shape (n_records,)
        The data: the base set and (``flip``) the canaries' sources are drawn from it, disjointly.
    train_size : int
        Records in the base training set every model holds.
    model, train : ModelSpec, TrainSpec
        The recipe under audit (with its DP-SGD settings, if any).
    n_models : int, default=64
        Training runs, >= 4; each canary is in exactly ``n_models // 2`` of them. With no error at all
        the bound cannot exceed about ``log(n_models * n_canaries / 4 / 3.7)`` at alpha = 0.05.
    n_canaries : int, default=1
        Canaries; more give more trials per model (see the independence note in the module docstring).
    canary_kind : {"flip", "ood"}
    delta : float, optional
        The delta of the claim. Default: the largest delta the models' DP accountant recorded, else the
        recipe's ``dp_delta``, else ``1 / train_size``.
    alpha : float, default=0.05
        The bound holds with probability >= 1 - alpha.
    threshold_fraction : float, default=0.5
        Share of the trials that chooses the threshold (the rest certify the bound).
    seed : int
        Fixes the base set, the canaries, the inclusions, every model's seed and the split.
    trainer : callable, default=:func:`~miaudit.training.trainer.train_models`
        Trains one model per training set; receives a pool of the base set followed by the canaries.
    epsilon_claimed : float, optional
        The claim to test; ``consistent`` compares the bound with it.
    progress : callable, optional
        ``progress(n_done, n_total)`` as models finish.

    Returns
    -------
    PrivacyAuditResult
    """
    seed = check_seed(seed)
    X, y = check_training_data(X, y, model)
    train_size = _check_int("train_size", train_size, minimum=1, hint="records of the base training set")
    n_models = _check_int("n_models", n_models, minimum=4, hint="training runs; 64 or more for a useful bound")
    n_canaries = _check_int("n_canaries", n_canaries, minimum=1, hint="canary records")
    if canary_kind not in CANARY_KINDS:
        raise ConfigError(f"canary_kind must be one of {', '.join(map(repr, CANARY_KINDS))}; got {canary_kind!r}")
    claim = _check_claim(epsilon_claimed)
    need = train_size + (n_canaries if canary_kind == "flip" else 0)
    if len(X) < need:
        raise DataError(
            f"the audit needs {need} records ({train_size} for the base set"
            f"{f' and {n_canaries} canary sources' if canary_kind == 'flip' else ''}); the data has {len(X)}"
        )

    order = make_rng(seed, "privacy_audit", "base").permutation(len(X))
    base, rest = order[:train_size], order[train_size:]
    source_X, source_y = (X[rest], y[rest]) if canary_kind == "flip" else (X, y)
    Xc, yc = make_canaries(
        source_X, source_y, n_canaries, kind=canary_kind, n_classes=model.n_classes, seed=derive_seed(seed, "canary")
    )
    pool_X = np.concatenate([X[base], Xc.astype(X.dtype, copy=False)])
    pool_y = np.concatenate([y[base], yc])
    member = _inclusion(n_canaries, n_models, seed)
    base_idx = np.arange(train_size)
    train_sets = [np.r_[base_idx, train_size + np.flatnonzero(member[:, m])] for m in range(n_models)]
    seeds = [derive_seed(seed, "privacy_audit", "model", m) for m in range(n_models)]
    logger.info(
        "privacy audit: %d models on %d records, %d %s canar%s each in half of them",
        n_models,
        train_size,
        n_canaries,
        canary_kind,
        "y" if n_canaries == 1 else "ies",
    )
    models = trainer(pool_X, pool_y, train_sets, seeds=seeds, model=model, train=train, progress=progress)
    if len(models) != n_models:
        raise DataError(f"the trainer returned {len(models)} models for {n_models} training sets")

    scores = np.empty((n_canaries, n_models))
    for m, trained in enumerate(models):
        target = as_target(trained, n_features=model.n_features, n_classes=model.n_classes)
        scores[:, m] = -cross_entropy(target.predict_proba(Xc), yc)

    eps_accounted, delta_accounted = _accounted(models)
    if delta is None:
        if delta_accounted is not None:
            delta = delta_accounted
        else:
            dp_delta = getattr(train, "dp_delta", None)
            delta = float(dp_delta) if dp_delta is not None else 1.0 / train_size
    bound = epsilon_lower_bound_from_scores(
        scores.ravel(),
        member.ravel(),
        delta=delta,
        alpha=alpha,
        threshold_fraction=threshold_fraction,
        groups=np.repeat(np.arange(n_canaries), n_models) if n_canaries > 1 else None,
        seed=derive_seed(seed, "privacy_audit", "threshold"),
    )
    reference = claim if claim is not None else eps_accounted
    result = PrivacyAuditResult(
        epsilon_lb=bound.epsilon_lb,
        alpha=bound.alpha,
        delta=bound.delta,
        n_trials=int(scores.size),
        counts=bound.counts,
        epsilon_claimed=claim,
        epsilon_accounted=eps_accounted,
        consistent=None if reference is None else bool(bound.epsilon_lb <= reference),
        attack=AUDIT_ATTACK,
        canary_kind=canary_kind,
        threshold=bound.threshold,
        n_models=n_models,
        n_canaries=n_canaries,
    )
    logger.info(
        "privacy audit: epsilon >= %.3f at delta %.3g (confidence %.3g); accounted %s",
        result.epsilon_lb,
        result.delta,
        1 - result.alpha,
        "none" if eps_accounted is None else f"{eps_accounted:.3f}",
    )
    return result
