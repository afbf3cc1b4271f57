"""What an audit reads: the user's data (members, non-members, the attacker's population) and the model.

The data's labels are encoded in the model's class order; the model is a loaded file or a prediction
service, and with it comes the family of shadow models the attacker can train (clones of a scikit-learn
estimator, the torch factory) or none (the built-in MLPs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.errors import ConfigError, DataError
from miaudit.seeding import make_rng
from miaudit.studies.audit_config import AuditConfig

__all__ = ["AuditData", "TargetSource", "load_audit_data", "open_target"]


@dataclass(frozen=True, eq=False)
class AuditData:
    """The evaluated records (members and non-members) and the attacker's population."""

    X: np.ndarray  # (n_eval, n_features) float32
    y: np.ndarray  # (n_eval,) class indices
    labels: np.ndarray  # (n_eval,) raw labels
    ids: np.ndarray  # (n_eval,) str
    member: np.ndarray  # (n_eval,) bool
    X_pop: np.ndarray
    y_pop: np.ndarray
    classes: tuple[Any, ...]
    record_shape: tuple[int, ...] | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------- data
def _read(cfg: AuditConfig, path: str, *, labels_path: str | None = None, exclude: tuple[str, ...] = ()) -> Any:
    from miaudit.data.tables import read_table

    return read_table(
        path,
        label_column=cfg.label_column,
        id_column=cfg.id_column,
        feature_columns=cfg.feature_columns,
        labels_path=labels_path,
        exclude_columns=exclude,
    )


def load_audit_data(cfg: AuditConfig, *, classes: tuple[Any, ...] | None, n_classes: int | None) -> AuditData:
    """Read the data, the members, the non-members and the population; encode labels in the model's class order."""
    from miaudit.data.membership import check_disjoint, member_mask, read_member_ids
    from miaudit.data.tables import encode_labels

    exclude = (cfg.member_column,) if cfg.member_column else ()
    table = _read(cfg, cfg.data, labels_path=cfg.labels, exclude=exclude)
    if cfg.members is not None:
        mask = member_mask(table, member_ids=read_member_ids(cfg.members, id_column=cfg.id_column or "id"))
    else:
        mask = member_mask(table, member_column=cfg.member_column)
    members = table.subset(mask)
    rest = table.subset(~mask)
    rng = make_rng(cfg.seed, "audit-split")
    if cfg.nonmembers is not None:
        nonmembers = _read(cfg, cfg.nonmembers)
        population = rest if cfg.population is None else _read(cfg, cfg.population)
        pop_source = f"rest of {cfg.data}" if cfg.population is None else cfg.population
    elif cfg.population is not None:
        nonmembers, population, pop_source = rest, _read(cfg, cfg.population), cfg.population
    else:
        # from the rest: as many evaluated non-members as members (at most half of the rest), the others are
        # the attacker's population
        n_eval = min(len(members), len(rest) // 2)
        order = rng.permutation(len(rest))
        nonmembers, population = rest.subset(np.sort(order[:n_eval])), rest.subset(np.sort(order[n_eval:]))
        pop_source = f"rest of {cfg.data} ({len(population)} of {len(rest)} non-member records)"
    if len(nonmembers) == 0:
        raise DataError(
            f"{cfg.data}: no non-member records to compare the members with; every record is a member. "
            "Add records the model never saw, or pass --nonmembers FILE"
        )
    check_disjoint(population, members, what_a="the attacker's population", what_b="the members")
    if classes is None:
        pooled = np.concatenate([members.labels, nonmembers.labels, population.labels])
        try:
            encoded = encode_labels(pooled, None)
        except DataError as exc:
            raise DataError(
                f"{exc}; or name the classes in the model (a scikit-learn model knows its classes_)"
            ) from None
        n = max(int(encoded.max()) + 1, n_classes or 0)
        classes = tuple(range(n))
    y_m, y_n, y_p = (encode_labels(t.labels, classes) for t in (members, nonmembers, population))
    X = np.concatenate([members.X, nonmembers.X]).astype(np.float32, copy=False)
    info = {
        "source": cfg.data,
        "n_records": len(table),
        "n_features": int(X.shape[1]),
        "n_classes": len(classes),
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
        "record_shape": list(table.record_shape) if table.record_shape else None,
        "feature_names": list(table.feature_names),
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
        "n_population": len(population),
        "population_source": pop_source,
    }
    return AuditData(
        X=X,
        y=np.concatenate([y_m, y_n]),
        labels=np.concatenate([members.labels, nonmembers.labels]),
        ids=np.concatenate([members.ids, nonmembers.ids]).astype(str),
        member=np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)],
        X_pop=np.asarray(population.X, dtype=np.float32),
        y_pop=y_p,
        classes=tuple(classes),
        record_shape=tuple(table.record_shape) if table.record_shape else None,
        info=info,
    )


# ---------------------------------------------------------------------------------------------- target
@dataclass(eq=False)
class TargetSource:
    """The audited black box, what it says of itself, and the trainer of shadows of its family (None: MLPs)."""

    target: Any
    info: dict[str, Any]
    classes: tuple[Any, ...] | None
    n_classes: int | None
    trainer: Any = None  # the family trainer, None: built-in MLPs
    shadows: str = "built-in MLPs"


def open_target(cfg: AuditConfig, *, cache_dir: Path) -> TargetSource:
    """The black box: a loaded model file or a prediction service, and the shadow family it allows."""
    assert cfg.model is not None
    if cfg.is_url:
        from miaudit.targets.http import HttpTarget

        s = cfg.service
        target = HttpTarget(
            cfg.model,
            token_file=s.token_file,
            token_env=s.token_env,
            batch_size=s.batch_size,
            concurrency=s.concurrency,
            timeout=s.timeout,
            max_retries=s.max_retries,
            budget=s.budget,
            cache_dir=s.cache_dir or cache_dir / "answers",
        )
        classes = getattr(target, "classes", None)
        info = {"source": cfg.model, "family": "http", "description": f"prediction service at {cfg.model}"}
        return TargetSource(target, info, tuple(classes) if classes else None, target.n_classes)
    from miaudit.targets.loaders import load_model

    loaded = load_model(
        cfg.model,
        input_shape=cfg.input_shape,
        output_kind=cfg.output_kind if cfg.output_kind != "loss" else "auto",
        factory=cfg.factory,
        allow_unsafe_pickle=cfg.allow_unsafe_pickle,
        trusted=cfg.trust,
    )
    info = {
        "source": cfg.model,
        "family": loaded.family,
        "description": loaded.description,
        "output_kind": loaded.output_kind,
    }
    out = TargetSource(
        loaded.target, info, tuple(loaded.classes) if loaded.classes is not None else None, loaded.n_classes
    )
    if cfg.shadows != "mlp":
        from miaudit.training.family import SklearnFamily, TorchFamily

        if loaded.family == "sklearn" and loaded.estimator is not None:
            out.trainer = SklearnFamily(loaded.estimator, n_classes=loaded.n_classes)
            out.shadows = f"clones of {loaded.description or type(loaded.estimator).__name__}"
        elif loaded.family == "torch" and loaded.module_factory is not None:
            out.trainer = TorchFamily(
                loaded.module_factory,
                n_classes=loaded.n_classes,
                input_shape=loaded.input_shape,
                output_kind="probabilities" if loaded.output_kind == "probabilities" else "logits",
            )
            out.shadows = f"the module of {cfg.factory}, trained with the recipe"
        elif cfg.shadows == "family":
            raise ConfigError(
                f"shadows = 'family' needs a model whose family can be trained again: a scikit-learn estimator, "
                f"or torch weights with --factory; {cfg.model} is a {loaded.family} model without one. "
                "Use shadows = 'auto' or 'mlp'"
            )
    return out
