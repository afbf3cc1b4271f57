"""The one experiment layer: every command evaluates settings through :class:`Experiment`.

``miaudit attack`` (one setting, one seed), ``compare`` (a grid over attacks) and ``reproduce`` (the
seed study's grids) differ only in the settings and seeds they hand to :meth:`Experiment.run`. So do
the splits, the seeds and the cache, which makes ``attack --seed 0`` and seed 0 of a study with the same
setting attack the same target and give the same numbers.

Splits (``SPLIT_VERSION``). For each (dataset, classes, seed) the pool is split once
(``derive_seed(seed, "split", dataset, classes)``): a target region of ``2 * T`` records
(``T = min(12000, 0.3 * pool)``: candidate members and held-out non-members, each in an order drawn
from ``make_rng(seed, "target-order", ...)``) and the attacker's population (the rest). A target of
size n trains on the first n candidates and is evaluated on them and the first n held-out records.
The split does not depend on which settings run, so the cache stays valid across any selection.

Seeds. The target of a setting: ``derive_seed(seed, "target")``, whatever its architecture and size, so
the arms of a comparison share their randomness where the design allows (a dense and a dropout target
start from the same weights and see the same minibatches: common random numbers make paired differences
less noisy); the attack:
``derive_seed(seed, "attack")`` for every attack, so attacks that train shadow models with the same
recipe share them (shadow k's set and seed depend only on the attack seed and k: nine shadows serve
every count from 2 to 9, and the shadow-model and threshold attacks use the same ones).

Caching. Every model is trained through a :class:`~miaudit.studies.cache.CachingTrainer` keyed by what
determines it; every evaluation is stored with its per-record scores (metrics are recomputed from
them on reading, so a change in metric code never leaves stale numbers). Before evaluating a seed,
:meth:`Experiment.plan` asks each pending attack which models it will train (a dry run that stops at
the attack's first training call) and trains all of them together, in large batches of the engine.

Evaluating. With every model trained, the evaluations run side by side on :data:`EVAL_THREADS` threads
(their attack classifiers fit on one core each, and libsvm, liblinear, the tree and PyTorch release the
interpreter while they compute); each evaluation draws only from its own seeds, so the numbers are those of
running them one by one, and the results come back in the order of the settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from miaudit.attacks.base import Attack, AttackerKnowledge
from miaudit.attacks.registry import create_attack
from miaudit.data import Dataset, load_dataset, make_split
from miaudit.errors import DataError
from miaudit.metrics import FPR_LEVELS, membership_metrics
from miaudit.seeding import derive_seed, make_rng
from miaudit.studies.cache import (
    TRAIN_CHUNK,
    Cache,
    CachingTrainer,
    key_hash,
    model_key,
    rows_digest,
    train_key,
)
from miaudit.studies.schema import RunSpec, Setting
from miaudit.targets.base import BlackBox
from miaudit.targets.local import LocalTarget
from miaudit.training.distributed import executor_for
from miaudit.training.engine.planning import MAX_CHUNK
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

__all__ = [
    "EVAL_KEY_VERSION",
    "EVAL_THREADS",
    "SPLIT_VERSION",
    "Evaluation",
    "Experiment",
    "RunStats",
    "Split",
    "StageProgress",
    "TargetInfo",
    "TrainedTarget",
    "target_pool_size",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """The method under the experiment's lock (its memos are shared by evaluations running side by side)."""

    @functools.wraps(method)
    def wrapper(self: Experiment, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


#: evaluations run side by side once the models are trained: one per usable core, at most 4 (each holds its
#: shadows' outputs and its attack's classifiers)
EVAL_THREADS = max(1, min(4, _usable_cores()))

#: ``progress(stage, n_done, n_total)``; ``n_total`` 0 means "started, no count"
StageProgress = Callable[[str, int, int], None]

SPLIT_VERSION = 2
#: bump when an attack's scores for the same key change meaning (an attack's algorithm changed)
EVAL_KEY_VERSION = 1
MAX_TARGET_POOL = 12_000
TARGET_POOL_FRACTION = 0.3


def target_pool_size(n_records: int) -> int:
    """Candidate members (and as many held-out records) reserved for targets in a pool of n_records.

    >>> target_pool_size(70_000), target_pool_size(14_000)
    (12000, 4200)
    """
    return min(MAX_TARGET_POOL, int(TARGET_POOL_FRACTION * n_records))


@dataclass(frozen=True, eq=False)
class Split:
    """Index arrays into a data view: candidate members, held-out records, the attacker's population."""

    members: np.ndarray
    nonmembers: np.ndarray
    population: np.ndarray


@dataclass(frozen=True)
class TargetInfo:
    """The target's architecture, training size and accuracies."""

    arch: str
    n_train: int
    train_accuracy: float
    test_accuracy: float
    #: test accuracy of the answers the target's API gives (its output policy applied), None without a policy
    served_test_accuracy: float | None = None
    #: the epsilon its DP-SGD training spent (the accountant's), None without DP-SGD
    epsilon_spent: float | None = None

    @property
    def generalization_gap(self) -> float:
        return self.train_accuracy - self.test_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "generalization_gap": self.generalization_gap}


@dataclass(frozen=True, eq=False)
class TrainedTarget:
    """A trained target and the records it is evaluated on (members first, then as many non-members).

    ``X`` and ``y`` are those records (rows ``eval_idx`` of the view), gathered once and read-only, so that
    the target's answers on them are computed once for all the attacks that query it
    (:meth:`~miaudit.training.networks.MLPParams.logits` remembers them).
    """

    model: MLPParams
    key: dict[str, Any]
    eval_idx: np.ndarray
    is_member: np.ndarray
    info: TargetInfo
    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One attack on one target: a setting and a seed, with per-record scores.

    Attributes
    ----------
    setting : Setting
    seed : int
    attack_params : dict
        The attack's constructor parameters (JSON scalars; others as their repr).
    metrics : dict
        :func:`miaudit.metrics.membership_metrics` of the scores at the attack's threshold.
    target : TargetInfo
    queries : int
        Records the target answered.
    fit_s, score_s : float
        Seconds to fit the attack and to score the records, models' training excluded.
    member_scores, nonmember_scores : ndarray of shape (n_members,), (n_nonmembers,)
    from_cache : bool
    """

    setting: Setting
    seed: int
    attack_params: dict[str, Any]
    metrics: dict[str, Any]
    target: TargetInfo
    queries: int
    fit_s: float
    score_s: float
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    from_cache: bool = False

    @property
    def attack_time_s(self) -> float:
        return self.fit_s + self.score_s


@dataclass
class RunStats:
    """Where a run's time went and how much it reused."""

    training_s: float = 0.0
    attack_fit_s: float = 0.0
    evaluation_s: float = 0.0
    models_trained: int = 0
    models_from_cache: int = 0
    attacks_run: int = 0
    attacks_from_cache: int = 0
    #: evaluations run side by side (attack_fit_s and evaluation_s add up the time of each)
    attack_threads: int = 1

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in vars(self).items()}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v) for k, v in d.items()}


class _Planned(Exception):
    """Raised by the planning trainer at an attack's first training call."""


@dataclass
class _Request:
    X: np.ndarray
    y: np.ndarray
    sets: list[np.ndarray] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


class _PlanningTrainer:
    """Records an attack's training request and stops the dry run."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, list[np.ndarray], list[int], ModelSpec, TrainSpec]] = []

    def __call__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        model: ModelSpec,
        train: TrainSpec,
        progress: Any = None,
    ) -> list[MLPParams]:
        self.calls.append((X, y, [np.asarray(s) for s in train_sets], list(seeds), model, train))
        raise _Planned


class _UniformTarget:
    """Answers every record with equal probabilities (the dry run's stand-in for the target)."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), self.n_classes), 1.0 / self.n_classes)


class Experiment:
    """Evaluates settings over seeds: data views, splits, targets, attacker's knowledge, attacks, cache.

    Parameters
    ----------
    run : RunSpec
        Engine, precision, data folder and where models train (in process, or on the Dask cluster of
        ``run.scheduler`` / ``run.workers``, connected on the first model to train and closed when
        :meth:`run` returns); seeds are passed to :meth:`run`.
    cache : Cache or None
        Where trained models and evaluations are kept; None keeps nothing beyond this object.
    progress : callable, optional
        ``progress(stage, n_done, n_total)``.
    """

    def __init__(self, run: RunSpec | None = None, *, cache: Cache | None, progress: StageProgress | None = None):
        self.run_spec = run or RunSpec()
        self.cache = cache
        self.progress = progress
        self.stats = RunStats()
        # a Dask cluster when the run names one (connected on the first model to train), else in process
        self.executor = executor_for(self.run_spec.scheduler, self.run_spec.workers)
        if self.executor is None:
            self.trainer = CachingTrainer(cache, on_train=self._trained)
        else:
            base = functools.partial(train_models, executor=self.executor)
            self.trainer = CachingTrainer(cache, base=base, on_train=self._trained, chunk_size=self._models_per_call)
        self._views: dict[tuple[str, int | None], Dataset] = {}
        self._splits: dict[tuple[str, int | None, int], Split] = {}
        self._populations: OrderedDict[tuple[str, int | None, int], tuple[np.ndarray, np.ndarray, str]] = OrderedDict()
        # each live population array's records as rows of its view: id -> (the array, view X, view y, rows)
        self._population_rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._targets: OrderedDict[str, TrainedTarget] = OrderedDict()
        # guards the views, splits, populations, targets and stats when evaluations run side by side
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ data
    @_locked
    def view(self, dataset: str, classes: int | None) -> Dataset:
        """The dataset, cut to its first ``classes`` classes (None: all)."""
        key = (dataset, classes)
        if key not in self._views:
            full = self._views.get((dataset, None)) or load_dataset(dataset, data_dir=self.run_spec.data_dir)
            self._views[(dataset, None)] = full
            if classes is not None and classes > full.n_classes:
                raise DataError(f"{dataset} has {full.n_classes} classes; a setting asks for {classes}")
            self._views[key] = full if classes in (None, full.n_classes) else full.subset_classes(classes)
        return self._views[key]

    @_locked
    def split(self, dataset: str, classes: int | None, seed: int) -> Split:
        """The split of a data view for one seed (see the module docstring)."""
        key = (dataset, classes, seed)
        if key not in self._splits:
            ds = self.view(dataset, classes)
            n_classes = ds.n_classes
            t = target_pool_size(ds.n_samples)
            s = make_split(
                ds.y,
                target_size=t,
                target_test_size=t,
                n_shadows=0,
                shadow_train_size=0,
                shadow_test_size=0,
                seed=derive_seed(seed, "split", dataset, n_classes),
            )
            rng = make_rng(seed, "target-order", dataset, n_classes)
            self._splits[key] = Split(
                members=s.target_in[rng.permutation(len(s.target_in))],
                nonmembers=s.target_out[rng.permutation(len(s.target_out))],
                population=s.population,
            )
        return self._splits[key]

    @_locked
    def _population(self, st: Setting, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The attacker's records for a view and seed (one array per view and seed, shared by its attacks)."""
        key = (st.dataset, st.classes, seed)
        if key not in self._populations:
            ds, sp = self.view(st.dataset, st.classes), self.split(st.dataset, st.classes, seed)
            X, y = ds.X[sp.population], ds.y[sp.population]
            X.setflags(write=False)
            y.setflags(write=False)
            # the same digest as array_digest(X, y), remembered for the view's rows: hashed once per run
            self._populations[key] = (X, y, rows_digest(ds.X, ds.y, sp.population))
            self._population_rows[id(X)] = (X, ds.X, ds.y, np.asarray(sp.population))
            while len(self._populations) > 4:
                _, (old_X, *_) = self._populations.popitem(last=False)
                self._population_rows.pop(id(old_X), None)
        return self._populations[key]

    # ------------------------------------------------------------------ models
    def train_spec(self, st: Setting) -> TrainSpec:
        """The setting's recipe with this run's engine, precision and device."""
        r = st.train
        return TrainSpec(
            epochs=r.epochs,
            batch_size=r.batch_size,
            lr=r.lr,
            weight_decay=r.weight_decay,
            engine=self.run_spec.engine,
            precision=self.run_spec.precision,
            dp_epsilon=r.dp_epsilon,
            dp_noise_multiplier=r.dp_noise_multiplier,
            dp_delta=r.dp_delta,
            max_grad_norm=r.max_grad_norm,
            dp_accountant=r.dp_accountant,
            label_smoothing=r.label_smoothing,
            early_stopping_patience=r.early_stopping_patience,
            validation_fraction=r.validation_fraction,
            device=self.run_spec.device,
        )

    def _target_request(self, st: Setting, seed: int) -> tuple[Dataset, np.ndarray, int, ModelSpec, TrainSpec]:
        ds, sp = self.view(st.dataset, st.classes), self.split(st.dataset, st.classes, seed)
        n = st.target_size
        if n > len(sp.members):
            raise DataError(
                f"setting {st.setting_id} asks for {n} target members, but the {ds.n_classes}-class {st.dataset} "
                f"pool reserves only {len(sp.members)} (and as many non-members) for targets; use a smaller "
                "target_size or more classes"
            )
        spec = ModelSpec.from_arch(st.arch, n_features=ds.n_features, n_classes=ds.n_classes)
        return ds, sp.members[:n], derive_seed(seed, "target"), spec, self.train_spec(st)

    def target_key(self, st: Setting, seed: int) -> dict[str, Any]:
        """The cache key of the setting's target for ``seed`` (computed without training it)."""
        ds, idx, tseed, spec, train = self._target_request(st, seed)
        return model_key(ds.X, ds.y, idx, seed=tseed, model=spec, train=train)

    @_locked
    def target(self, st: Setting, seed: int) -> TrainedTarget:
        """The setting's target for ``seed``, trained (or read from the cache), with its evaluation records."""
        ds, idx, tseed, spec, train = self._target_request(st, seed)
        key = model_key(ds.X, ds.y, idx, seed=tseed, model=spec, train=train)
        name = key_hash(key)
        if name in self._targets:
            return self._targets[name]
        (model,) = self.trainer(ds.X, ds.y, [idx], seeds=[tseed], model=spec, train=train)
        sp = self.split(st.dataset, st.classes, seed)
        out = sp.nonmembers[: len(idx)]
        info = TargetInfo(
            arch=st.arch,
            n_train=len(idx),
            train_accuracy=model.accuracy(ds.X[idx], ds.y[idx]),
            test_accuracy=model.accuracy(ds.X[out], ds.y[out]),
            epsilon_spent=model.privacy.epsilon if model.privacy is not None else None,
        )
        is_member = np.r_[np.ones(len(idx), bool), np.zeros(len(out), bool)]
        eval_idx = np.concatenate([idx, out])
        X, y = ds.X[eval_idx], ds.y[eval_idx]
        X.setflags(write=False)
        y.setflags(write=False)
        trained = TrainedTarget(model, key, eval_idx, is_member, info, X, y)
        self._targets[name] = trained
        while len(self._targets) > 8:  # evaluations go seed by seed: a seed's targets stay
            self._targets.popitem(last=False)
        return trained

    def knowledge(self, st: Setting, seed: int, *, trainer: Any = None) -> AttackerKnowledge:
        """What the attacker knows: its population, the architecture and recipe it believes."""
        X, y, _ = self._population(st, seed)
        ds = self.view(st.dataset, st.classes)
        spec = ModelSpec.from_arch(st.attacker_arch, n_features=ds.n_features, n_classes=ds.n_classes)
        return AttackerKnowledge(
            X=X, y=y, n_classes=ds.n_classes, model=spec, train=self.train_spec(st), trainer=trainer or self.trainer
        )

    def attack(self, st: Setting, seed: int) -> Attack:
        """The setting's attack, unfitted, with its seed derived from ``seed``."""
        return create_attack(st.attack, **st.attack_kwargs(seed=derive_seed(seed, "attack")))

    # ------------------------------------------------------------------ evaluations
    def eval_key(self, st: Setting, seed: int) -> dict[str, Any]:
        """What determines an evaluation: target, attack and parameters, attacker's knowledge, evaluated records."""
        _, _, population = self._population(st, seed)
        ds, sp = self.view(st.dataset, st.classes), self.split(st.dataset, st.classes, seed)
        n = st.target_size
        evaluated = np.concatenate([sp.members[:n], sp.nonmembers[:n]])
        attacker_spec = ModelSpec.from_arch(st.attacker_arch, n_features=ds.n_features, n_classes=ds.n_classes)
        attacker = attacker_spec.to_dict()
        attacker.pop("name")
        key = {
            "v": EVAL_KEY_VERSION,
            "target": self.target_key(st, seed),
            "attack": st.attack,
            "params": _jsonable(st.attack_kwargs(seed=derive_seed(seed, "attack"))),
            "knowledge": {
                "population": population,
                "model": attacker,
                "train": train_key(self.train_spec(st), attacker_spec),
            },
            "records": rows_digest(ds.X, ds.y, evaluated),
        }
        if st.output_policy != "full":  # absent at the defaults: earlier evaluations keep their keys
            key["policy"] = st.output_policy
        if st.transport != "local":
            key["transport"] = st.transport
        return key

    def _models_per_call(self) -> int:
        """On a cluster, models per engine call and cache checkpoint: a full chunk for every worker."""
        n_workers = self.executor.n_workers if self.executor is not None else 1
        return max(TRAIN_CHUNK, MAX_CHUNK * n_workers)

    def close(self) -> None:
        """Disconnect from the run's Dask cluster (stopping it if the run started it); a later run reconnects."""
        if self.executor is not None:
            self.executor.close()

    def _trained(self, n_models: int, seconds: float) -> None:
        with self._lock:
            self.stats.models_trained += n_models
            self.stats.training_s += seconds

    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def evaluate(self, st: Setting, seed: int) -> Evaluation:
        """Fit the setting's attack for ``seed`` and score the target's members and non-members (cached)."""
        key = self.eval_key(st, seed)
        got = self.cache.get("evals", key) if self.cache is not None else None
        if got is not None:
            with self._lock:
                self.stats.attacks_from_cache += 1
            return self._from_cache(st, seed, *got)
        target = self.target(st, seed)
        attack = self.attack(st, seed)
        kn = self.knowledge(st, seed)
        label = getattr(attack, "progress_label", "train models")
        train_before = self.stats.training_s
        t0 = time.perf_counter()
        attack.fit(kn, progress=lambda d, t: self._report(label, d, t))
        t1 = time.perf_counter()
        fit_train = self.stats.training_s - train_before
        with self._black_box(st, target) as black_box:
            scores = attack.score(black_box, target.X, target.y)
        t2 = time.perf_counter()
        score_train = self.stats.training_s - train_before - fit_train
        fit_s, score_s = max(0.0, t1 - t0 - fit_train), max(0.0, t2 - t1 - score_train)
        with self._lock:
            self.stats.attack_fit_s += fit_s
            self.stats.evaluation_s += score_s
            self.stats.attacks_run += 1
        meta = {
            "threshold": float(attack.threshold_),
            "queries": int(black_box.n_queries),
            "fit_s": round(fit_s, 4),
            "score_s": round(score_s, 4),
            "target": dataclasses.asdict(self._served_info(st, target)),
            "attack_params": _jsonable(attack.get_params()),
        }
        if self.cache is not None:
            self.cache.put("evals", key, {"scores": scores, "is_member": target.is_member}, meta)
        return self._from_cache(st, seed, {"scores": scores, "is_member": target.is_member}, meta, fresh=True)

    @contextlib.contextmanager
    def _black_box(self, st: Setting, target: TrainedTarget) -> Iterator[BlackBox]:
        """What the attacker queries: the target behind its output policy, in process or served over HTTP."""
        local: BlackBox = LocalTarget(target.model)
        if st.transport == "http":
            from miaudit.targets.served import served_target

            with served_target(local, policy=st.output_policy) as remote:
                yield remote
        elif st.output_policy != "full":
            from miaudit.targets.policies import PolicyTarget

            yield PolicyTarget(local, st.output_policy)
        else:
            yield local

    def _served_info(self, st: Setting, target: TrainedTarget) -> TargetInfo:
        """The target's info, with its test accuracy as its API answers (the policy's utility) when there is one."""
        if st.output_policy == "full":
            return target.info
        from miaudit.targets.policies import PolicyTarget

        ds = self.view(st.dataset, st.classes)
        out = target.eval_idx[~target.is_member]
        answers = PolicyTarget(LocalTarget(target.model), st.output_policy).predict_proba(ds.X[out])
        served = float(np.mean(answers.argmax(axis=1) == ds.y[out]))
        return dataclasses.replace(target.info, served_test_accuracy=served)

    @staticmethod
    def _from_cache(
        st: Setting, seed: int, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, fresh: bool = False
    ) -> Evaluation:
        scores, is_member = arrays["scores"].astype(np.float64), arrays["is_member"].astype(bool)
        metrics = membership_metrics(is_member, scores, threshold=meta["threshold"], fpr_levels=FPR_LEVELS)
        return Evaluation(
            setting=st,
            seed=seed,
            attack_params=meta["attack_params"],
            metrics=metrics,
            target=TargetInfo(**meta["target"]),
            queries=int(meta["queries"]),
            fit_s=float(meta["fit_s"]),
            score_s=float(meta["score_s"]),
            member_scores=scores[is_member],
            nonmember_scores=scores[~is_member],
            from_cache=not fresh,
        )

    # ------------------------------------------------------------------ planning and running
    def plan(self, pairs: Iterable[tuple[Setting, int]]) -> None:
        """Train, in large batches, every model that the pending evaluations will ask for first.

        Each evaluation not in the cache contributes its target and a dry run of its attack that
        records the attack's first training request. Requests on the same records, architecture and
        recipe are merged, so shadows shared by several settings are trained once.
        """
        groups: dict[tuple[int, str, str], tuple[_Request, ModelSpec, TrainSpec]] = {}
        seen: set[tuple[int, str, str, int, bytes]] = set()

        def add(X: np.ndarray, y: np.ndarray, sets: list[np.ndarray], seeds: list[int], m: ModelSpec,
                t: TrainSpec) -> None:  # fmt: skip
            rows = self._population_rows.get(id(X))
            if rows is not None and rows[0] is X:
                # a seed's attacker population: the same records as rows of the view, so that every seed's
                # shadows of one architecture and recipe are one request (the models' keys are the same:
                # they hash the training records, not the array they are taken from)
                _, X, y, population = rows
                sets = [population[s] for s in sets]
            g = (id(X), key_hash(m), key_hash(t))
            if g not in groups:
                groups[g] = (_Request(X, y), m, t)
            for s, sd in zip(sets, seeds, strict=True):
                if (*g, sd, s.tobytes()) not in seen:
                    seen.add((*g, sd, s.tobytes()))
                    groups[g][0].sets.append(s)
                    groups[g][0].seeds.append(sd)

        for st, seed in pairs:
            if self.cache is not None and self.cache.has("evals", self.eval_key(st, seed)):
                continue
            ds, idx, tseed, spec, train = self._target_request(st, seed)
            add(ds.X, ds.y, [idx], [tseed], spec, train)
            planner = _PlanningTrainer()
            attack = self.attack(st, seed)
            tgt = self.split(st.dataset, st.classes, seed)
            records = np.concatenate([tgt.members[: st.target_size], tgt.nonmembers[: st.target_size]])
            try:
                attack.fit(self.knowledge(st, seed, trainer=planner))
                attack.score(_UniformTarget(ds.n_classes), ds.X[records], ds.y[records])
            except _Planned:
                pass
            for X, y, sets, seeds, m, t in planner.calls:
                add(X, y, sets, seeds, m, t)
        todo = []
        for request, m, t in groups.values():
            keys = self.trainer.keys(request.X, request.y, request.sets, seeds=request.seeds, model=m, train=t)
            names = {key_hash(k): k for k in keys}
            n_missing = sum(1 for k in names.values() if self.cache is None or not self.cache.has("models", k))
            self.stats.models_from_cache += len(names) - n_missing
            todo.append((request, m, t, n_missing))
        total = sum(n for *_, n in todo)
        if not total:
            return
        done = 0
        self._report("train models", 0, total)

        def report(d: int, _total: int) -> None:
            self._report("train models", done + d, total)

        for request, m, t, n in todo:
            if not n:
                continue
            self.trainer(
                request.X,
                request.y,
                request.sets,
                seeds=request.seeds,
                model=m,
                train=t,
                progress=report,
            )
            done += n
        self._report("train models", total, total)

    def run(self, settings: Sequence[Setting], seeds: Sequence[int]) -> list[Evaluation]:
        """Evaluate every setting for every seed, reusing the cache.

        The models every evaluation asks for first are trained before any evaluation, for all seeds at once
        (:meth:`plan`): the engine then gets one large request per architecture and recipe instead of one per
        seed, whose few models (a lone target, an odd number of shadows) would leave workers idle. Each
        chunk of trained models is cached as it finishes, so an interrupted run keeps them. The
        evaluations follow seed by seed, :data:`EVAL_THREADS` side by side; each is cached as it finishes.
        """
        out: list[Evaluation] = []
        n_total = len(settings) * len(seeds)
        self._report("attacks", 0, n_total)
        try:
            pairs = [(st, seed) for seed in seeds for st in settings]
            self.plan(pairs)
            for (st, s), ev in zip(pairs, self._evaluate_all(pairs), strict=True):
                out.append(ev)
                self._report("attacks", len(out), n_total)
                cached = " (cached)" if ev.from_cache else ""
                logger.info("%s seed %d: AUC %.4f%s", st.setting_id, s, ev.metrics["auc"], cached)
        finally:
            self.close()
        return out

    def _evaluate_all(self, pairs: Sequence[tuple[Setting, int]]) -> Iterator[Evaluation]:
        """The evaluations of ``pairs``, in order, computed on up to :data:`EVAL_THREADS` threads.

        When one fails, those not started are cancelled and those running finish (and are cached) before the
        error propagates.
        """
        threads = min(EVAL_THREADS, len(pairs))
        if threads <= 1:
            yield from (self.evaluate(st, s) for st, s in pairs)
            return
        self.stats.attack_threads = max(self.stats.attack_threads, threads)
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="miaudit-evaluate")
        try:
            first: dict[str, Future[Evaluation]] = {}
            futures = []
            for st, s in pairs:
                name = key_hash(self.eval_key(st, s))
                if name in first:  # the same evaluation again (two studies share it): read when the first is done
                    futures.append(pool.submit(self._evaluate_after, first[name], st, s))
                else:
                    futures.append(first.setdefault(name, pool.submit(self.evaluate, st, s)))
            for future in futures:
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _evaluate_after(self, before: Future[Evaluation], st: Setting, seed: int) -> Evaluation:
        before.result()  # submitted earlier, so running or done: waiting cannot hold up its thread
        return self.evaluate(st, seed)
