"""Audit-result details that mutation testing showed no test pinned: the slices' metric names and values, and
the order of equally exposed members in exposed.npz (their order of appearance)."""

from __future__ import annotations

import numpy as np

from miaudit.metrics import auc
from miaudit.studies.audit_results import AttackOutcome, slice_metrics, write_exposed


def test_slice_metrics_give_each_slice_its_own_auc_under_that_name() -> None:
    rng = np.random.default_rng(0)
    member = np.arange(40) % 2 == 0
    scores = rng.normal(size=40) + member
    cls = np.arange(40) % 4 // 2  # class 0: records 0, 1, 4, 5, ...; both memberships in each class
    out = slice_metrics(member, scores, class_index=cls, correct=np.ones(40, dtype=bool), class_names=["a", "b"])
    for c, name in enumerate(["a", "b"]):
        got = out["class"][name]
        assert got["auc"] == auc(member[cls == c], scores[cls == c])
        assert (got["n_members"], got["n_nonmembers"]) == (10, 10)
    assert out["prediction"]["correct"]["auc"] == auc(member, scores)
    assert out["prediction"]["wrong"] == {"n_members": 0, "n_nonmembers": 0}


def test_equally_exposed_members_are_written_in_their_order_of_appearance(tmp_path) -> None:
    # 601 members, all but one with the same score (quicksort would not keep their order at this size)
    member = np.ones(601, dtype=bool)
    scores = np.ones(601)
    scores[300] = 5.0
    outcome = AttackOutcome(name="loss", scores=scores, member=member, threshold=0.0, metrics={}, intervals={},
                            flagged={}, flag_thresholds={})  # fmt: skip
    ids = np.array([f"r{i}" for i in range(601)])
    X = np.arange(1202, dtype=np.float32).reshape(601, 2)
    path = write_exposed(tmp_path, [outcome], X=X, ids=ids, member=member, record_shape=None, top=4)
    got = np.load(path)
    assert list(got["ids_loss"]) == ["r300", "r0", "r1", "r2"]  # the highest first, then ties as they appear
    np.testing.assert_array_equal(got["X_loss"], X[[300, 0, 1, 2]])
