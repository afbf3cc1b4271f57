"""Output policies: what a prediction API reveals of its probability vectors (output defences).

A policy is a pure function of the probabilities a model computes, applied before they leave the
service. The policies and their peers:

``full``
    The whole vector, unchanged (no defence).
``top_k`` (``k``)
    The k largest probabilities; the others are set to 0 and the row is **not renormalised**, so a row
    sums to at most 1 (what a service that lists its top k classes with their scores reveals). Ties are
    broken by class index: among equal probabilities the lower class index is kept. Shokri et al.
    (2017) and ML-Leaks (Salem et al. 2019) evaluate this restriction; ML-Leaks finds that top-3 leaves
    its attacks nearly as strong.
``rounding`` (``decimals``)
    Each probability rounded to ``decimals`` decimal places (numpy's round half to even), as in Shokri
    et al.'s "rounding" mitigation. Rows may then not sum exactly to 1 (e.g. three classes at 1/3 give
    0.33 each) and nearly tied classes may become tied.
``temperature`` (``temperature``)
    ``softmax(log p / t)``: t > 1 flattens the vector, t < 1 sharpens it; the order of the classes is
    kept, so the predicted label never changes. (A post-hoc temperature on a trained model's outputs,
    not the training-time temperature of defensive distillation.)
``label_only``
    The one-hot vector of the predicted class (ties: the lowest class index). The label-only attacks of
    Choquette-Choo et al. (2021) show that membership still leaks through labels alone.
``noise`` (``noise_scale``, ``distribution``)
    Laplace (default) or Gaussian noise of scale ``noise_scale`` added to every probability, the result
    clipped at 0 and renormalised (a row whose entries are all clipped answers the one-hot vector of its
    largest noisy entry). The noise is a deterministic function of the queried record's bytes and the
    policy's ``seed``: asking for the same record again returns the same answer, so an attacker cannot
    average the noise out by repeating queries (MemGuard-style output perturbation, Jia et al. 2019,
    without its optimisation). Without records, the probability row itself keys the noise.

The functions (:func:`top_k`, :func:`round_probabilities`, :func:`with_temperature`,
:func:`label_only`, :func:`noisy`) take and return ndarrays of shape (n_samples, n_classes);
:class:`OutputPolicy` is their frozen, validated description (``OutputPolicy.from_string("top_k:3")``);
:class:`PolicyTarget` is any target answering through a policy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from miaudit.errors import ConfigError, DataError
from miaudit.targets.base import BlackBox, Target

__all__ = [
    "NOISE_DISTRIBUTIONS",
    "POLICY_KINDS",
    "OutputPolicy",
    "PolicyTarget",
    "label_only",
    "noisy",
    "record_keys",
    "round_probabilities",
    "top_k",
    "with_temperature",
]

NOISE_DISTRIBUTIONS = ("laplace", "gaussian")

_U64 = np.uint64
_MASK = (1 << 64) - 1


# ------------------------------------------------------------------------------------ pure functions
def _check_P(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 1:
        raise DataError(f"probabilities must be an ndarray of shape (n_samples, n_classes); got shape {P.shape}")
    if not np.isfinite(P).all():
        raise DataError("probabilities contain NaN or infinite values; an output policy needs finite probabilities")
    return P


def top_k(P: np.ndarray, *, k: int) -> np.ndarray:
    """Keep each row's ``k`` largest probabilities, set the rest to 0, without renormalising.

    Ties are broken by class index (the lower index is kept), so the result is deterministic.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
    k : int
        Between 1 and n_classes.

    Returns
    -------
    ndarray of shape (n_samples, n_classes); each row sums to at most 1.

    >>> top_k(np.array([[0.1, 0.3, 0.3, 0.3]]), k=2).tolist()
    [[0.0, 0.3, 0.3, 0.0]]
    """
    P = _check_P(P)
    _check_k(k, n_classes=P.shape[1])
    order = np.argsort(-P, axis=1, kind="stable")  # stable: equal values keep class order
    out = np.zeros_like(P)
    rows = np.arange(len(P))[:, None]
    keep = order[:, :k]
    out[rows, keep] = P[rows, keep]
    return out


def round_probabilities(P: np.ndarray, *, decimals: int) -> np.ndarray:
    """Round each probability to ``decimals`` decimal places (round half to even); rows may not sum to 1.

    >>> round_probabilities(np.array([[0.123, 0.456, 0.421]]), decimals=1).tolist()
    [[0.1, 0.5, 0.4]]
    """
    P = _check_P(P)
    _check_decimals(decimals)
    return np.round(P, decimals)


def with_temperature(P: np.ndarray, *, temperature: float) -> np.ndarray:
    """``softmax(log p / t)`` of each row, i.e. ``p ** (1/t)`` renormalised; zeros stay zero.

    >>> with_temperature(np.array([[0.8, 0.2]]), temperature=2.0).round(4).tolist()
    [[0.6667, 0.3333]]
    """
    P = _check_P(P)
    _check_temperature(temperature)
    if (P < 0).any():
        raise DataError("temperature needs non-negative probabilities; got negative entries")
    with np.errstate(divide="ignore"):
        z = np.log(P) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    out = np.exp(z)
    out /= out.sum(axis=1, keepdims=True)
    return out


def label_only(P: np.ndarray) -> np.ndarray:
    """The one-hot vector of each row's predicted class (ties: the lowest class index).

    >>> label_only(np.array([[0.2, 0.4, 0.4], [0.9, 0.05, 0.05]])).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    P = _check_P(P)
    out = np.zeros_like(P)
    out[np.arange(len(P)), P.argmax(axis=1)] = 1.0
    return out


def record_keys(R: np.ndarray, *, seed: int) -> np.ndarray:
    """A 64-bit key per row of ``R``: a keyed BLAKE2b hash of the row's bytes (as float64) and ``seed``.

    Equal rows give equal keys; the same row under another seed gets another key.

    Parameters
    ----------
    R : ndarray of shape (n_samples, ...)
        The records (or anything identifying each answer).

    Returns
    -------
    ndarray of shape (n_samples,), uint64
    """
    R = np.asarray(R)
    if R.ndim < 1:
        raise DataError(f"record keys need an array with one row per record; got a {R.ndim}-d array")
    rows = np.ascontiguousarray(R.reshape(len(R), -1), dtype=np.float64) + 0.0  # + 0.0 maps -0.0 to 0.0
    key = int(seed).to_bytes(8, "little")
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little") for row in rows),
        dtype=_U64,
        count=len(rows),
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (a bijection with good avalanche)."""
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def _uniforms(keys: np.ndarray, n_classes: int, stream: int) -> np.ndarray:
    """Uniforms in (0, 1) of shape (n_samples, n_classes), a pure function of (key, class, stream)."""
    counters = np.arange(n_classes, dtype=_U64) * _U64(2) + _U64(stream + 1)
    with np.errstate(over="ignore"):
        z = _splitmix64(_splitmix64(keys[:, None] ^ _U64(0xD1B54A32D192ED03)) + counters[None, :])
    return ((z >> _U64(11)).astype(np.float64) + 0.5) * 2.0**-53


def noisy(P: np.ndarray, *, scale: float, keys: np.ndarray, distribution: str = "laplace") -> np.ndarray:
    """Add seeded noise to each probability, clip at 0 and renormalise each row.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
    scale : float
        Laplace scale b (or Gaussian standard deviation), > 0.
    keys : ndarray of shape (n_samples,), uint64
        One key per row (see :func:`record_keys`); row i's noise is a fixed function of ``keys[i]``.
    distribution : {"laplace", "gaussian"}

    Returns
    -------
    ndarray of shape (n_samples, n_classes); rows sum to 1. A row whose noisy entries are all <= 0
    answers the one-hot vector of its largest noisy entry.
    """
    P = _check_P(P)
    _check_scale(scale)
    _check_distribution(distribution)
    keys = np.asarray(keys)
    if keys.shape != (len(P),) or keys.dtype != _U64:
        raise DataError(f"keys must be a uint64 ndarray of shape ({len(P)},); got {keys.dtype} {keys.shape}")
    u = _uniforms(keys, P.shape[1], 0)
    if distribution == "laplace":
        d = u - 0.5
        noise = -float(scale) * np.sign(d) * np.log1p(-2.0 * np.abs(d))
    else:
        v = _uniforms(keys, P.shape[1], 1)
        noise = float(scale) * np.sqrt(-2.0 * np.log(u)) * np.cos(2.0 * math.pi * v)
    raw = P + noise
    out = np.clip(raw, 0.0, None)
    sums = out.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0.0
    if empty.any():
        out[empty] = label_only(raw[empty])
        sums[empty] = 1.0
    return out / sums


# ------------------------------------------------------------------------------------ validation
def _bad(name: str, value: object, allowed: str, example: str) -> ConfigError:
    return ConfigError(f"{name} must be {allowed}; got {value!r} (e.g. {example})")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_k(k: object, *, n_classes: int | None = None) -> None:
    if not _is_int(k) or cast(int, k) < 1:
        raise _bad("top_k's k", k, "an integer >= 1", "OutputPolicy('top_k', k=3) or 'top_k:3'")
    if n_classes is not None and cast(int, k) > n_classes:
        raise ConfigError(f"top_k's k={k} exceeds the {n_classes} classes of the answers; choose k <= {n_classes}")


def _check_decimals(decimals: object) -> None:
    if not _is_int(decimals) or not 1 <= cast(int, decimals) <= 15:
        raise _bad("rounding's decimals", decimals, "an integer from 1 to 15", "'rounding:2'")


def _check_temperature(t: object) -> None:
    if not _is_real(t) or not (math.isfinite(cast(float, t)) and cast(float, t) > 0):
        raise _bad("temperature", t, "a finite number > 0", "'temperature:4'")


def _check_scale(scale: object) -> None:
    if not _is_real(scale) or not (math.isfinite(cast(float, scale)) and cast(float, scale) > 0):
        raise _bad("noise_scale", scale, "a finite number > 0", "'noise:0.1'")


def _check_distribution(distribution: object) -> None:
    if distribution not in NOISE_DISTRIBUTIONS:
        raise _bad("distribution", distribution, f"one of {', '.join(map(repr, NOISE_DISTRIBUTIONS))}", "'laplace'")


def _apply_noise(P: np.ndarray, policy: OutputPolicy, rng_key: np.ndarray | None) -> np.ndarray:
    source = P if rng_key is None else np.asarray(rng_key)
    if len(source) != len(P):
        raise DataError(f"rng_key must have one row per answer ({len(P)}); got {len(source)} rows")
    keys = record_keys(source, seed=policy.seed)
    return noisy(P, scale=cast(float, policy.noise_scale), keys=keys, distribution=policy.distribution)


#: ``apply(P, policy, rng_key) -> answers`` of one kind
_Apply = Callable[[np.ndarray, "OutputPolicy", "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class _Kind:
    """One policy kind: how it is applied, and its parameter (field name, string parser, check) or None."""

    apply: _Apply
    param: str | None = None
    parse: Callable[[str], Any] | None = None
    check: Callable[[object], None] | None = None


#: The policy kinds, by name.
_KINDS: dict[str, _Kind] = {
    "full": _Kind(lambda P, p, key: P.copy()),
    "top_k": _Kind(lambda P, p, key: top_k(P, k=cast(int, p.k)), "k", int, _check_k),
    "rounding": _Kind(
        lambda P, p, key: round_probabilities(P, decimals=cast(int, p.decimals)), "decimals", int, _check_decimals
    ),
    "temperature": _Kind(
        lambda P, p, key: with_temperature(P, temperature=cast(float, p.temperature)),
        "temperature",
        float,
        _check_temperature,
    ),
    "label_only": _Kind(lambda P, p, key: label_only(P)),
    "noise": _Kind(_apply_noise, "noise_scale", float, _check_scale),
}
#: Names accepted by :class:`OutputPolicy` ``kind``.
POLICY_KINDS: tuple[str, ...] = tuple(_KINDS)
_PARAMS = ("k", "decimals", "temperature", "noise_scale")


@dataclass(frozen=True)
class OutputPolicy:
    """A frozen, validated output policy (see the module docstring for each kind's semantics).

    Parameters
    ----------
    kind : {"full", "top_k", "rounding", "temperature", "label_only", "noise"}
    k, decimals, temperature, noise_scale : the one parameter of ``top_k``, ``rounding``,
        ``temperature`` and ``noise`` respectively; every other kind's parameter must stay None.
    distribution : {"laplace", "gaussian"}
        The noise of ``noise``.
    seed : int
        Keys the noise of ``noise`` (with each record's bytes).
    """

    kind: str = "full"
    k: int | None = None
    decimals: int | None = None
    temperature: float | None = None
    noise_scale: float | None = None
    distribution: str = "laplace"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise _bad("the output policy", self.kind, f"one of {', '.join(map(repr, POLICY_KINDS))}", "'top_k:3'")
        spec = _KINDS[self.kind]
        for name in _PARAMS:
            value = getattr(self, name)
            if name == spec.param:
                if value is None:
                    raise ConfigError(f"the {self.kind} policy needs {name}; e.g. {_example(self.kind)}")
                assert spec.check is not None
                spec.check(value)
            elif value is not None:
                raise ConfigError(
                    f"{name}={value!r} does not apply to the {self.kind} policy; "
                    f"leave it unset{f' (it takes {spec.param})' if spec.param else ''}"
                )
        _check_distribution(self.distribution)
        if not _is_int(self.seed) or not 0 <= int(self.seed) < 2**63:
            raise _bad("the policy's seed", self.seed, "an integer in [0, 2**63)", "seed=0")

    @property
    def parameter(self) -> int | float | None:
        """The value of this kind's one parameter (None for ``full`` and ``label_only``)."""
        param = _KINDS[self.kind].param
        return None if param is None else getattr(self, param)

    def apply(self, P: np.ndarray, *, rng_key: np.ndarray | None = None) -> np.ndarray:
        """The answer the policy reveals: ndarray of shape (n_samples, n_classes).

        Parameters
        ----------
        P : ndarray of shape (n_samples, n_classes)
            The model's probabilities.
        rng_key : ndarray of shape (n_samples, ...), optional
            Identifies each answer for the ``noise`` policy: usually the queried records, so that one
            record always gets one answer. None keys the noise by the probability rows themselves.
        """
        return _KINDS[self.kind].apply(_check_P(P), self, rng_key)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able (``OutputPolicy(**d)`` rebuilds it)."""
        return asdict(self)

    def to_string(self) -> str:
        """The short form :meth:`from_string` reads (the seed is not part of it)."""
        if self.kind == "noise" and self.distribution != "laplace":
            return f"noise:{self.noise_scale!r}:{self.distribution}"
        param = self.parameter
        return self.kind if param is None else f"{self.kind}:{param!r}"

    @classmethod
    def from_string(cls, text: str, *, seed: int = 0) -> OutputPolicy:
        """Parse ``"full"``, ``"label_only"``, ``"top_k:3"``, ``"rounding:2"``, ``"temperature:4"``,
        ``"noise:0.1"`` or ``"noise:0.1:gaussian"`` (CLI options and TOML values).

        >>> OutputPolicy.from_string("top_k:3").k, OutputPolicy.from_string("noise:0.1:gaussian").distribution
        (3, 'gaussian')
        """
        if not isinstance(text, str):
            raise ConfigError(f"an output policy is written as a string like 'top_k:3'; got {text!r}")
        kind, *args = [part.strip() for part in text.strip().split(":")]
        if kind not in _KINDS:
            raise _bad("the output policy", text, f"one of {', '.join(map(repr, POLICY_KINDS))}", "'top_k:3'")
        spec = _KINDS[kind]
        max_args = 0 if spec.param is None else (2 if kind == "noise" else 1)
        if spec.param is not None and not args:
            raise ConfigError(f"the {kind} policy needs a value: write {_example(kind)}")
        if len(args) > max_args:
            raise ConfigError(f"too many ':' parts in output policy {text!r}; write {_example(kind)}")
        fields: dict[str, Any] = {"kind": kind, "seed": seed}
        if spec.param is not None:
            assert spec.parse is not None
            try:
                fields[spec.param] = spec.parse(args[0])
            except ValueError:
                raise ConfigError(
                    f"cannot read {args[0]!r} in output policy {text!r}; write {_example(kind)}"
                ) from None
        if len(args) == 2:
            fields["distribution"] = args[1]
        return cls(**fields)


def _example(kind: str) -> str:
    return {"top_k": "'top_k:3'", "rounding": "'rounding:2'", "temperature": "'temperature:4'"}.get(
        kind, "'noise:0.1' or 'noise:0.1:gaussian'" if kind == "noise" else repr(kind)
    )


# ------------------------------------------------------------------------------------ the wrapper
class PolicyTarget(BlackBox):
    """A target that answers through an output policy; counts its own queries like any black box.

    Parameters
    ----------
    target : BlackBox or Target
        The wrapped target (its own counters keep counting too).
    policy : OutputPolicy or str
        The policy, or its short form (``"top_k:3"``).
    n_features, n_classes : int, optional
        Needed only when ``target`` is not a :class:`BlackBox` (which knows its own).
    """

    def __init__(
        self,
        target: BlackBox | Target,
        policy: OutputPolicy | str,
        *,
        n_features: int | None = None,
        n_classes: int | None = None,
    ) -> None:
        if not hasattr(target, "predict_proba"):
            raise ConfigError(f"cannot wrap {type(target).__name__}: a target needs a predict_proba(X) method")
        if isinstance(policy, str):
            policy = OutputPolicy.from_string(policy)
        if not isinstance(policy, OutputPolicy):
            raise ConfigError(f"policy must be an OutputPolicy or a string like 'top_k:3'; got {policy!r}")
        n_features = getattr(target, "n_features", None) if n_features is None else n_features
        n_classes = getattr(target, "n_classes", None) if n_classes is None else n_classes
        if n_features is None or n_classes is None:
            raise ConfigError("wrapping a target that is not a BlackBox needs n_features and n_classes")
        if policy.kind == "top_k":
            _check_k(policy.k, n_classes=int(n_classes))
        inner = getattr(target, "name", None) or type(target).__name__
        super().__init__(n_features=int(n_features), n_classes=int(n_classes), name=f"{inner} ({policy.to_string()})")
        self.target = target
        self.policy = policy

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.policy.apply(self.target.predict_proba(X), rng_key=X)

    def __repr__(self) -> str:
        return f"PolicyTarget({self.target!r}, {self.policy.to_string()!r})"
