"""An audit from precomputed outputs: no model to query, no shadows to train (TF Privacy's ``AttackInputData``).

The user gives the model's outputs (probabilities, logits or losses) for members and non-members, by record
id. The threshold attacks' signals (loss, confidence, entropy, modified entropy) are computed from them; AUC
and TPR at low FPR need no threshold. Hard decisions (accuracy, precision) use the threshold that maximises
balanced accuracy *on the evaluated records themselves*: an optimistic upper bound, stated as such in
``audit.json`` (``threshold_source: "oracle"``), since without shadows there is nothing else to calibrate on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from miaudit.errors import DataError
from miaudit.studies.audit_config import AuditConfig
from miaudit.studies.audit_results import (
    AttackOutcome,
    attack_outcome,
    record_rows,
    slice_metrics,
    verdict_text,
    write_exposed,
    write_records,
)
from miaudit.studies.store import write_json

__all__ = ["audit_outputs"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def audit_outputs(
    cfg: AuditConfig, *, record: dict[str, Any], out: Path, say: Any
) -> tuple[Any, list[AttackOutcome], dict[str, Any]]:
    """Score members and non-members from their stored outputs with the threshold signals."""
    from miaudit.attacks.threshold import membership_signal
    from miaudit.data.membership import member_mask, read_member_ids
    from miaudit.data.tables import encode_labels, read_table
    from miaudit.metrics import best_threshold
    from miaudit.targets.outputs import load_outputs

    assert cfg.outputs is not None
    exclude = (cfg.member_column,) if cfg.member_column else ()
    table = read_table(
        cfg.data,
        label_column=cfg.label_column,
        id_column=cfg.id_column,
        feature_columns=cfg.feature_columns,
        labels_path=cfg.labels,
        exclude_columns=exclude,
    )
    if cfg.members is not None:
        mask = member_mask(table, member_ids=read_member_ids(cfg.members, id_column=cfg.id_column or "id"))
    else:
        mask = member_mask(table, member_column=cfg.member_column)
    kind = cfg.output_kind
    outs = load_outputs(cfg.outputs, kind=kind, id_column=cfg.id_column or "id")
    pos = {str(i): k for k, i in enumerate(table.ids)}
    missing = [i for i in outs.ids if str(i) not in pos]
    if missing:
        raise DataError(
            f"{cfg.outputs}: {len(missing)} output rows name ids not in {cfg.data} "
            f"(first: {', '.join(map(str, missing[:5]))}); "
            "the outputs and the data must share the id column"
        )
    rows = np.array([pos[str(i)] for i in outs.ids], dtype=np.int64)
    member = mask[rows]
    if member.all() or not member.any():
        raise DataError(
            f"{cfg.outputs}: the outputs cover {int(member.sum())} members and {int((~member).sum())} non-members; "
            "an audit needs outputs of both"
        )
    values = np.asarray(outs.values, dtype=np.float64)
    if outs.kind == "loss":
        classes: tuple[Any, ...] = tuple(sorted(set(table.labels.tolist())))
        y = encode_labels(table.labels[rows], None)
        signals = {"loss": -values.reshape(-1)}
        predicted = np.full(len(rows), -1)
    else:
        P = _softmax(values) if outs.kind == "logits" else values
        classes = tuple(range(P.shape[1]))
        y = encode_labels(table.labels[rows], None)
        if y.max() >= P.shape[1]:
            raise DataError(f"labels reach {int(y.max())} but the outputs have {P.shape[1]} columns (classes)")
        signals = {name: membership_signal(name, P, y) for name in cfg.chosen_attacks()}
        predicted = P.argmax(axis=1)
    bad = [a for a in cfg.chosen_attacks() if a not in signals]
    if bad:
        raise DataError(f"outputs of kind 'loss' allow only the loss attack; not {', '.join(bad)}")
    correct = predicted == y
    record["data"] = {
        "source": cfg.data,
        "n_records": len(table),
        "n_features": int(table.X.shape[1]),
        "n_classes": len(classes),
        "classes": list(classes),
        "record_shape": list(table.record_shape) if table.record_shape else None,
        "feature_names": list(table.feature_names),
        "n_members": int(member.sum()),
        "n_nonmembers": int((~member).sum()),
        "n_population": 0,
        "population_source": "none (outputs only)",
    }
    target: dict[str, Any] = {"source": cfg.outputs, "family": "outputs", "output_kind": outs.kind}
    if outs.kind != "loss":
        target.update(
            answers=outs.kind,
            member_accuracy=float(correct[member].mean()),
            nonmember_accuracy=float(correct[~member].mean()),
        )
        target["generalization_gap"] = target["member_accuracy"] - target["nonmember_accuracy"]
    record["target"] = target
    record["shadows"] = {"family": "none", "description": "none: thresholds from the evaluated records (oracle)"}
    outcomes, tables = [], []
    ids = table.ids[rows].astype(str)
    for name, s in signals.items():
        t = best_threshold(member, s)
        o = attack_outcome(name, member, s, threshold=t, n_boot=cfg.n_boot, seed=cfg.seed)
        outcomes.append(o)
        record["attacks"][name] = {
            "params": {},
            "threshold": t,
            "threshold_source": "oracle",
            "metrics": o.metrics,
            "intervals": o.intervals,
            "flagged": o.flagged,
            "slices": slice_metrics(member, s, class_index=y, correct=correct, class_names=[str(c) for c in classes]),
            "queries": 0,
            "timings": {"fit": 0.0, "score": 0.0},
            "verdict": verdict_text(o)[1],
        }
        say(f"{name}: AUC {o.metrics['auc']:.3f}, TPR {o.metrics['tpr_at_fpr']['0.001']:.3f} at 0.1% FPR")
        tables.append(
            record_rows(o, ids=ids, labels=table.labels[rows], class_index=y, member=member, predicted=predicted)
        )
    write_records(out, tables)
    write_json(out / "audit.json", record)
    write_exposed(out, outcomes, X=table.X[rows], ids=ids, member=member, record_shape=table.record_shape)
    return None, outcomes, {"queries": {"total": 0}}
