"""Run studies: plan the work, train every model once, evaluate every attack once, cache all of it.

Work is shared, never repeated. A target or a shadow model is a *unit* determined by its data view
(dataset, classes), the seed's split, its architecture, training set and recipe; shadow k of a
setting with n shadows is the same unit for every n > k, so nine shadows serve counts 2 to 9, and
every study that needs a unit reuses it. An attack evaluation is determined by its target unit, its
shadow units and the attack's settings. Each finished unit is written to the cache at once
(atomically), so an interrupted run resumes where it stopped and finishes with the same numbers.

Splits. For each (data view, seed) the pool is permuted once: a target region of ``2 * T`` records
(``T = min(12000, 0.3 * pool)``: candidate members and held-out non-members) and the attacker's
population (the rest). A target of size n trains on the first n candidate members and is evaluated on
them and the first n held-out records; all shadows are drawn from the population. The split does
not depend on which studies run, so caches stay valid across any selection of studies.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miaudit.attacks.shadow import ShadowData, ShadowModelAttack, draw_shadow_sets
from miaudit.data import Dataset, load_dataset, make_split
from miaudit.errors import DataError
from miaudit.metrics import membership_metrics
from miaudit.seeding import derive_seed, make_rng
from miaudit.studies.cache import Cache
from miaudit.studies.study import ReproduceConfig, Setting, TrainRecipe
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

__all__ = ["EvalResult", "RunStats", "StudyRunner", "target_pool_size"]

logger = logging.getLogger(__name__)

#: ``progress(stage, n_done, n_total)``
StageProgress = Callable[[str, int, int], None]

SPLIT_VERSION = 1
MAX_TARGET_POOL = 12_000
TARGET_POOL_FRACTION = 0.3
FPR_LEVELS = (0.01, 0.001, 0.0)
#: models trained per call of the engine (and per cache checkpoint)
TRAIN_CHUNK = 32


def target_pool_size(n_records: int) -> int:
    """Candidate members (and as many held-out records) reserved for targets in a pool of n_records.

    >>> target_pool_size(70_000), target_pool_size(14_000)
    (12000, 4200)
    """
    return min(MAX_TARGET_POOL, int(TARGET_POOL_FRACTION * n_records))


@dataclass(frozen=True)
class _Split:
    members: np.ndarray  # candidate members, in random order (targets take a prefix)
    nonmembers: np.ndarray  # held-out records, in random order
    population: np.ndarray  # the attacker's records


@dataclass(frozen=True)
class _Unit:
    """One model to train: its cache key and how to train it."""

    key: dict[str, Any]
    view: tuple[str, int]
    arch: str
    recipe: TrainRecipe
    train_idx: np.ndarray = field(compare=False, repr=False)
    eval_in: np.ndarray = field(compare=False, repr=False)
    eval_out: np.ndarray = field(compare=False, repr=False)
    seed: int = 0


@dataclass
class EvalResult:
    """One attack evaluation (one setting, one seed)."""

    setting: Setting
    seed: int
    metrics: dict[str, Any]
    target: dict[str, float]
    member_scores: np.ndarray
    nonmember_scores: np.ndarray


@dataclass
class RunStats:
    training_s: float = 0.0
    attack_fit_s: float = 0.0
    evaluation_s: float = 0.0
    models_trained: int = 0
    models_from_cache: int = 0
    attacks_run: int = 0
    attacks_from_cache: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in vars(self).items()}


class StudyRunner:
    """Plans and runs the settings of a :class:`ReproduceConfig` over its seeds.

    Parameters
    ----------
    config : ReproduceConfig
    cache : Cache
        Where finished units go (and are looked up).
    data_dir : str or None
        Where to look for Fashion-MNIST first.
    engine, precision : str
        Passed to the training recipe (see :class:`~miaudit.training.specs.TrainSpec`).
    progress : callable, optional
        ``progress(stage, n_done, n_total)``.
    """

    def __init__(
        self,
        config: ReproduceConfig,
        *,
        cache: Cache,
        data_dir: str | None = None,
        engine: str = "auto",
        precision: str = "auto",
        progress: StageProgress | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.data_dir = data_dir
        self.engine = engine
        self.precision = precision
        self.progress = progress
        self.stats = RunStats()
        self._views: dict[tuple[str, int], Dataset] = {}
        self._splits: dict[tuple[str, int, int], _Split] = {}
        self._outputs: OrderedDict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = OrderedDict()

    # ----------------------------------------------------------------- data
    def view(self, dataset: str, classes: int) -> Dataset:
        key = (dataset, classes)
        if key not in self._views:
            full = load_dataset(dataset, data_dir=self.data_dir)
            if classes > full.n_classes:
                raise DataError(f"{dataset} has {full.n_classes} classes; a setting asks for {classes}")
            self._views[key] = full if classes == full.n_classes else full.subset_classes(classes)
        return self._views[key]

    def split(self, dataset: str, classes: int, seed: int) -> _Split:
        key = (dataset, classes, seed)
        if key not in self._splits:
            ds = self.view(dataset, classes)
            t = target_pool_size(ds.n_samples)
            s = make_split(
                ds.y,
                target_size=t,
                target_test_size=t,
                n_shadows=0,
                shadow_train_size=0,
                shadow_test_size=0,
                seed=derive_seed(seed, "split", dataset, classes),
            )
            rng = make_rng(seed, "target-order", dataset, classes)
            self._splits[key] = _Split(
                members=s.target_in[rng.permutation(len(s.target_in))],
                nonmembers=s.target_out[rng.permutation(len(s.target_out))],
                population=s.population,
            )
        return self._splits[key]

    # ----------------------------------------------------------------- planning
    def target_unit(self, st: Setting, seed: int) -> _Unit:
        sp = self.split(st.dataset, st.classes, seed)
        if st.target_size > len(sp.members):
            raise DataError(
                f"setting {st.setting_id} asks for {st.target_size} target members, but a {st.classes}-class "
                f"{st.dataset} pool reserves only {len(sp.members)} (and as many non-members) for targets; "
                "use a smaller target_size or more classes"
            )
        key = {
            "role": "target",
            "split": SPLIT_VERSION,
            "dataset": st.dataset,
            "classes": st.classes,
            "seed": seed,
            "arch": st.arch,
            "size": st.target_size,
            "train": st.train.model_dump(),
        }
        n = st.target_size
        return _Unit(
            key=key,
            view=(st.dataset, st.classes),
            arch=st.arch,
            recipe=st.train,
            train_idx=sp.members[:n],
            eval_in=sp.members[:n],
            eval_out=sp.nonmembers[:n],
            seed=derive_seed(seed, "target", st.arch, n),
        )

    def shadow_units(self, st: Setting, seed: int) -> list[_Unit]:
        sp = self.split(st.dataset, st.classes, seed)
        set_seed = derive_seed(seed, "shadow-sets", st.dataset, st.classes, int(st.disjoint_shadows))
        sets = draw_shadow_sets(
            len(sp.population),
            n_shadows=st.n_shadows,
            train_size=st.shadow_train_size,
            test_size=st.shadow_test_size,
            seed=set_seed,
            disjoint=st.disjoint_shadows,
        )
        units = []
        for k, (tr, te) in enumerate(sets):
            key = {
                "role": "shadow",
                "split": SPLIT_VERSION,
                "dataset": st.dataset,
                "classes": st.classes,
                "seed": seed,
                "arch": st.attacker_arch,
                "train_size": st.shadow_train_size,
                "test_size": st.shadow_test_size,
                "disjoint": st.disjoint_shadows,
                "k": k,
                "train": st.train.model_dump(),
            }
            pop = sp.population
            units.append(
                _Unit(
                    key=key,
                    view=(st.dataset, st.classes),
                    arch=st.attacker_arch,
                    recipe=st.train,
                    train_idx=pop[tr],
                    eval_in=pop[tr],
                    eval_out=pop[te],
                    seed=derive_seed(seed, "shadow", st.attacker_arch, k),
                )
            )
        return units

    def eval_key(self, st: Setting, seed: int) -> dict[str, Any]:
        return {
            "target": self.target_unit(st, seed).key,
            "shadows": [u.key for u in self.shadow_units(st, seed)],
            "attack_model": st.attack_model,
            "per_class": st.per_class,
            "features": st.features,
            "max_train_samples": self._max_samples(st),
        }

    def _max_samples(self, st: Setting) -> int | None:
        return self.config.rbf_max_samples if st.attack_model == "rbf-svm" else None

    # ----------------------------------------------------------------- training
    def train_missing(self, units: Iterable[_Unit]) -> None:
        """Train every unit not in the cache, in chunks grouped by data view, architecture and recipe."""
        unique: dict[str, _Unit] = {}
        for u in units:
            unique.setdefault(self.cache.path("models", u.key).name, u)
        missing = [u for u in unique.values() if not self.cache.has("models", u.key)]
        self.stats.models_from_cache += len(unique) - len(missing)
        total = len(missing)
        if not total:
            return
        groups: dict[tuple[Any, ...], list[_Unit]] = {}
        for u in missing:
            groups.setdefault((u.view, u.arch, u.recipe), []).append(u)
        done = 0
        self._report("train models", 0, total)
        for (view, arch, recipe), members in groups.items():
            ds = self.view(*view)
            spec = ModelSpec.from_arch(arch, n_features=ds.n_features, n_classes=ds.n_classes)
            train = TrainSpec(
                epochs=recipe.epochs,
                batch_size=recipe.batch_size,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                engine=self.engine,
                precision=self.precision,
            )
            members.sort(key=lambda u: len(u.train_idx))
            for start in range(0, len(members), TRAIN_CHUNK):
                chunk = members[start : start + TRAIN_CHUNK]
                t0 = time.perf_counter()
                models = train_models(
                    ds.X,
                    ds.y,
                    [u.train_idx for u in chunk],
                    seeds=[u.seed for u in chunk],
                    model=spec,
                    train=train,
                )
                for u, m in zip(chunk, models, strict=True):
                    idx = np.concatenate([u.eval_in, u.eval_out])
                    probs = m.predict_proba(ds.X[idx]).astype(np.float32)
                    member = np.r_[np.ones(len(u.eval_in), bool), np.zeros(len(u.eval_out), bool)]
                    meta = {
                        "train_accuracy": m.accuracy(ds.X[u.train_idx], ds.y[u.train_idx]),
                        "test_accuracy": m.accuracy(ds.X[u.eval_out], ds.y[u.eval_out]),
                    }
                    self.cache.put("models", u.key, {"probs": probs, "labels": ds.y[idx], "is_member": member}, meta)
                self.stats.training_s += time.perf_counter() - t0
                self.stats.models_trained += len(chunk)
                done += len(chunk)
                self._report("train models", done, total)

    def _outputs_of(self, unit: _Unit) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        name = self.cache.path("models", unit.key).name
        if name in self._outputs:
            self._outputs.move_to_end(name)
            return self._outputs[name]
        got = self.cache.get("models", unit.key)
        if got is None:  # removed as corrupt, or never trained
            self.train_missing([unit])
            got = self.cache.get("models", unit.key)
            if got is None:  # pragma: no cover - the write above failed silently
                raise DataError(f"cannot read back model outputs {name} from {self.cache.root}")
        self._outputs[name] = got
        if len(self._outputs) > 256:
            self._outputs.popitem(last=False)
        return got

    # ----------------------------------------------------------------- attacks
    def evaluate(self, st: Setting, seed: int) -> EvalResult:
        """Fit the shadow-model attack of one setting and score the target's members and non-members."""
        key = self.eval_key(st, seed)
        target_unit = self.target_unit(st, seed)
        got = self.cache.get("attacks", key)
        if got is not None:
            self.stats.attacks_from_cache += 1
            arrays, meta = got
            return EvalResult(st, seed, meta["metrics"], meta["target"], arrays["member"], arrays["nonmember"])
        shadows = self.shadow_units(st, seed)
        parts = [self._outputs_of(u)[0] for u in shadows]
        data = ShadowData(
            probs=np.concatenate([p["probs"] for p in parts]).astype(np.float64),
            labels=np.concatenate([p["labels"] for p in parts]),
            is_member=np.concatenate([p["is_member"] for p in parts]),
            shadow_id=np.concatenate([np.full(len(p["labels"]), k) for k, p in enumerate(parts)]),
        )
        t0 = time.perf_counter()
        attack = ShadowModelAttack(
            n_shadows=st.n_shadows,
            attack_model=st.attack_model,
            per_class=st.per_class,
            features=st.features,
            max_train_samples=self._max_samples(st),
            seed=derive_seed(seed, "attack", st.attack_model),
        ).fit_shadow_data(data)
        t1 = time.perf_counter()
        # the target's answers to the attacker's queries (computed once, when the target was trained)
        outputs, target_meta = self._outputs_of(target_unit)
        scores = attack.scores_from_probs(outputs["probs"].astype(np.float64), outputs["labels"])
        is_member = outputs["is_member"]
        metrics = membership_metrics(is_member, scores, threshold=attack.threshold_, fpr_levels=FPR_LEVELS)
        self.stats.attack_fit_s += t1 - t0
        self.stats.evaluation_s += time.perf_counter() - t1
        self.stats.attacks_run += 1
        target = {
            "train_accuracy": float(target_meta["train_accuracy"]),
            "test_accuracy": float(target_meta["test_accuracy"]),
        }
        target["generalization_gap"] = target["train_accuracy"] - target["test_accuracy"]
        member, nonmember = scores[is_member], scores[~is_member]
        self.cache.put(
            "attacks", key, {"member": member, "nonmember": nonmember}, {"metrics": metrics, "target": target}
        )
        return EvalResult(st, seed, metrics, target, member, nonmember)

    # ----------------------------------------------------------------- all of it
    def run(self) -> list[EvalResult]:
        """Train what is missing, then evaluate every setting for every seed (cached work is reused)."""
        settings = self.config.all_settings()
        seeds = self.config.seed_list
        pairs = [(st, seed) for seed in seeds for st in settings]
        units: list[_Unit] = []
        for st, seed in pairs:
            if not self.cache.has("attacks", self.eval_key(st, seed)):
                units.append(self.target_unit(st, seed))
                units.extend(self.shadow_units(st, seed))
        self.train_missing(units)
        results = []
        self._report("attacks", 0, len(pairs))
        for i, (st, seed) in enumerate(pairs):
            results.append(self.evaluate(st, seed))
            self._report("attacks", i + 1, len(pairs))
        return results

    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)
