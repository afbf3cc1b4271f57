"""``miaudit audit``: a user's model and data, end to end, with known answers and every bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from miaudit.errors import ConfigError, DataError
from miaudit.studies.audit import attack_params, audit, run_audit
from miaudit.studies.audit_config import load_audit_config
from miaudit.studies.audit_results import chance_pvalue

skops_io = pytest.importorskip("skops.io")

TREE = "sklearn.tree._tree.Tree"


def write_csv(path: Path, X: np.ndarray, y: np.ndarray, ids: list[str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *(f"f{j}" for j in range(X.shape[1])), "label"])
        for i in range(len(y)):
            w.writerow([ids[i], *map(repr, X[i].tolist()), int(y[i])])
    return path


def write_ids(path: Path, ids: list[str] | np.ndarray) -> Path:
    path.write_text("id\n" + "\n".join(ids) + "\n")
    return path


def forest_case(
    tmp_path: Path, *, n: int, n_members: int, random_labels: bool, seed: int = 0, train_on_members: bool = True
) -> dict[str, Path]:
    """A forest, its data file and the members file. ``train_on_members=False``: the forest trained on other
    records, so the "members" were never seen."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    if random_labels:
        y = rng.integers(0, 4, size=n)
    else:
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    ids = [f"r{i:05d}" for i in range(n)]
    members = np.sort(rng.choice(n, size=n_members, replace=False))
    if train_on_members:
        Xt, yt = X[members], y[members]
    else:  # fresh records from the same distribution, not in the data file
        Xt = rng.normal(size=(n_members, 8)).astype(np.float32)
        yt = (Xt[:, 0] + 0.5 * Xt[:, 1] > 0).astype(np.int64) + 2 * (Xt[:, 2] > 0)
    # fully grown trees on bootstrap samples: every member is memorised by the ~63% of trees that saw it
    forest = RandomForestClassifier(n_estimators=30, random_state=seed, n_jobs=1)
    forest.fit(Xt, yt)
    model = tmp_path / "forest.skops"
    skops_io.dump(forest, model)
    return {
        "model": model,
        "data": write_csv(tmp_path / "data.csv", X, y, ids),
        "members": write_ids(tmp_path / "members.csv", [ids[i] for i in members]),
    }


def test_random_labels_are_found(tmp_path: Path) -> None:
    """A forest that memorised random labels: LiRA with forest references finds its members (AUC >= 0.95)."""
    case = forest_case(tmp_path, n=900, n_members=300, random_labels=True)
    res = audit(
        **case, out=tmp_path / "audit", attacks=("lira", "loss"), trust=(TREE,), n_refs=8, report=True, dp_epsilon=0.5
    )
    rec = res.record
    assert rec["status"] == "complete"
    assert rec["shadows"]["family"] == "family"
    assert rec["target"]["member_accuracy"] == 1.0
    assert rec["target"]["nonmember_accuracy"] < 0.45  # random labels: chance is 0.25
    assert rec["attacks"]["lira"]["metrics"]["auc"] >= 0.95
    assert rec["attacks"]["loss"]["metrics"]["auc"] >= 0.95
    assert rec["verdict"]["leaks"] is True and rec["verdict"]["text"].startswith("leaks: at 0.1% FPR")
    lo, hi = rec["attacks"]["lira"]["intervals"]["auc"]
    assert lo <= rec["attacks"]["lira"]["metrics"]["auc"] <= hi
    # a claim of epsilon 0.5 is contradicted by a model that memorised its members
    assert rec["privacy"]["consistent"] is False and rec["privacy"]["epsilon_lb"] > 1.0
    assert "contradicted" in rec["privacy"]["text"]
    report = (tmp_path / "audit" / "report.md").read_text()
    assert rec["verdict"]["text"] in report and "Privacy claim" in report and "contradicted" in report


def test_unseen_members_are_not_found(tmp_path: Path) -> None:
    """'Members' the model never saw: AUC 0.50 +- 0.03 and no leak claimed."""
    case = forest_case(tmp_path, n=6000, n_members=2000, random_labels=False, train_on_members=False)
    res = audit(
        **case, out=tmp_path / "audit", attacks=("loss",), trust=(TREE,), report=False, n_boot=200, dp_epsilon=1.0
    )
    auc = res.record["attacks"]["loss"]["metrics"]["auc"]
    assert abs(auc - 0.5) <= 0.03, auc
    assert res.record["verdict"]["leaks"] is False
    assert res.record["verdict"]["text"].startswith("no leak measurable")
    assert res.record["privacy"]["consistent"] is True and res.record["privacy"]["epsilon_lb"] < 0.3
    assert "consistent with the claimed epsilon 1" in res.record["privacy"]["text"]


@pytest.fixture(scope="module")
def small_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    tmp = tmp_path_factory.mktemp("audit")
    case = forest_case(tmp, n=300, n_members=100, random_labels=True, seed=3)
    out = tmp / "audit"
    run_audit(
        load_audit_config(None, **{k: str(v) for k, v in case.items()}, attacks=("loss", "lira"), trust=(TREE,),
                          n_refs=4, n_shadows=2, n_boot=100),
        out,
        report=True,
    )  # fmt: skip
    return case, out


def test_audit_directory(small_audit: tuple[dict[str, Path], Path]) -> None:
    """audit.json has the documented keys; records list every evaluated record once per attack, ranked."""
    _, out = small_audit
    rec = json.loads((out / "audit.json").read_text())
    for key in ("config", "data", "target", "attacks", "verdict", "queries", "timings", "versions", "hardware"):
        assert key in rec
    assert rec["metrics"] == {name: a["metrics"] for name, a in rec["attacks"].items()}
    assert rec["data"]["n_members"] == 100 and rec["data"]["n_nonmembers"] == 100
    assert rec["data"]["n_population"] == 100
    with (out / "records.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 200
    lira = [r for r in rows if r["attack"] == "lira"]
    assert [int(r["rank"]) for r in lira] == list(range(1, 201))
    scores = [float(r["score"]) for r in lira]
    assert scores == sorted(scores, reverse=True)
    assert all(r["likelihood_ratio"] == r["score"] for r in lira)
    assert all(r["likelihood_ratio"] == "" for r in rows if r["attack"] == "loss")
    flagged = sum(r["flagged_fpr_0.01"] == "true" and r["member"] == "true" for r in lira)
    assert flagged == rec["attacks"]["lira"]["flagged"]["0.01"]
    import pyarrow.parquet as pq

    table = pq.read_table(out / "records.parquet")
    assert table.num_rows == 400 and table.column("id").to_pylist()[:3] == [r["id"] for r in rows[:3]]
    assert (out / "report.html").is_file() and (out / "exposed.npz").is_file()
    assert set(rec["attacks"]["lira"]["slices"]["prediction"]) == {"correct", "wrong"}


def test_same_seed_same_numbers(small_audit: tuple[dict[str, Path], Path], tmp_path: Path) -> None:
    case, out = small_audit
    cfg = load_audit_config(
        None, **{k: str(v) for k, v in case.items()}, attacks=("loss", "lira"), trust=(TREE,), n_refs=4,
        n_shadows=2, n_boot=100,
    )  # fmt: skip
    again = run_audit(cfg, tmp_path / "again", report=False)
    first = json.loads((out / "audit.json").read_text())
    for name in ("loss", "lira"):
        assert again.record["attacks"][name]["metrics"] == first["attacks"][name]["metrics"]
    other = run_audit(cfg.model_copy(update={"seed": 1}), tmp_path / "other", report=False)
    assert other.record["attacks"]["lira"]["metrics"] != first["attacks"]["lira"]["metrics"]


def test_outputs_only(tmp_path: Path) -> None:
    """Precomputed probabilities for members and non-members: the threshold signals, no model."""
    rng = np.random.default_rng(0)
    n = 400
    ids = [f"x{i}" for i in range(n)]
    y = rng.integers(0, 3, size=n)
    member = np.arange(n) < n // 2
    P = rng.dirichlet(np.ones(3), size=n)
    P[member, y[member]] += 2.0  # members: confident in their label
    P /= P.sum(axis=1, keepdims=True)
    write_csv(tmp_path / "data.csv", rng.normal(size=(n, 2)), y, ids)
    with (tmp_path / "outputs.csv").open("w") as f:
        f.write("id,p0,p1,p2\n" + "".join(f"{ids[i]},{P[i, 0]:.17g},{P[i, 1]:.17g},{P[i, 2]:.17g}\n" for i in range(n)))
    write_ids(tmp_path / "members.csv", [ids[i] for i in range(n) if member[i]])
    res = audit(
        outputs=tmp_path / "outputs.csv", data=tmp_path / "data.csv", members=tmp_path / "members.csv",
        out=tmp_path / "audit", report=False,
    )  # fmt: skip
    assert set(res.record["attacks"]) == {"loss", "confidence", "entropy", "modified-entropy"}
    from miaudit.metrics import auc

    # the confidence signal is monotone in the true class's probability: the same AUC, computed directly
    expected = auc(member, P[np.arange(n), y])
    assert expected > 0.9
    assert res.record["attacks"]["confidence"]["metrics"]["auc"] == pytest.approx(expected, abs=1e-12)
    assert res.record["attacks"]["loss"]["threshold_source"] == "oracle"


def test_attack_sizes_follow_the_data() -> None:
    """Shadow and reference sizes come from the members and the population; user parameters win."""
    from miaudit.studies.audit import AuditData

    data = AuditData(
        X=np.zeros((200, 2), np.float32), y=np.zeros(200, np.int64), labels=np.zeros(200), ids=np.arange(200),
        member=np.arange(200) < 100, X_pop=np.zeros((120, 2), np.float32), y_pop=np.zeros(120, np.int64),
        classes=(0, 1), record_shape=None,
    )  # fmt: skip
    cfg = load_audit_config(None, model="m.skops", data="d.csv", members="m.csv", attack_params={"rmia": {"gamma": 2}})
    shokri = attack_params("shokri", cfg, data)
    assert shokri["shadow_train_size"] == 60 and shokri["shadow_test_size"] == 60
    assert shokri["disjoint_shadows"] is False  # 4 shadows x 120 records > 120 in the population
    assert attack_params("lira", cfg, data)["ref_train_size"] == 100
    assert attack_params("rmia", cfg, data) == {"n_refs": 16, "ref_train_size": 30, "gamma": 2}
    assert "n_shadows" not in attack_params("ml-leaks", cfg, data)


def test_chance_pvalue_matches_the_product_formula() -> None:
    """P(k members above every non-member) = prod (n1 - i) / (n1 + n0 - i); more false positives allowed: more."""
    n1, n0 = 50, 70
    for k in (1, 2, 5):
        expected = math.prod((n1 - i) / (n1 + n0 - i) for i in range(k))
        assert chance_pvalue(n1, n0, found=k, fpr=0.001) == pytest.approx(expected, rel=1e-9)
    assert chance_pvalue(n1, n0, found=0, fpr=0.001) == 1.0
    assert chance_pvalue(1000, 1000, found=3, fpr=0.001) > chance_pvalue(1000, 1000, found=3, fpr=0.0)


# ------------------------------------------------------------------------------------------ bad input
def test_pickles_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"not really")
    write_csv(tmp_path / "d.csv", np.zeros((4, 2)), np.array([0, 1, 0, 1]), ["a", "b", "c", "d"])
    write_ids(tmp_path / "m.csv", ["a"])
    with pytest.raises(ConfigError, match="pickle"):
        audit(model=tmp_path / "model.pkl", data=tmp_path / "d.csv", members=tmp_path / "m.csv", out=tmp_path / "o")
    rec = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert rec["status"] == "interrupted" and "pickle" in rec["error"]


def test_population_overlapping_members_is_refused(tmp_path: Path) -> None:
    case = forest_case(tmp_path, n=200, n_members=60, random_labels=True)
    with pytest.raises(DataError, match="population"):
        audit(**case, population=case["data"], out=tmp_path / "o", trust=(TREE,), attacks=("loss",), report=False)


def test_too_small_population(tmp_path: Path) -> None:
    case = forest_case(tmp_path, n=40, n_members=30, random_labels=True)
    with pytest.raises(DataError, match="at least 20"):
        audit(**case, out=tmp_path / "o", trust=(TREE,), attacks=("loss",), report=False)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"data": "d.csv", "members": "m.csv"}, "give a model"),
        ({"model": "m.skops", "outputs": "o.csv", "data": "d.csv", "members": "m.csv"}, "exactly one"),
        ({"model": "m.skops", "data": "d.csv"}, "say who the members are"),
        ({"model": "m.skops", "data": "d.csv", "members": "m.csv", "member_column": "is_member"}, "not both"),
        ({"model": "m.skops", "data": "d.csv", "members": "m.csv", "attacks": ("nope",)}, "unknown attack 'nope'"),
        ({"outputs": "o.csv", "data": "d.csv", "members": "m.csv", "attacks": ("lira",)}, "outputs only"),
        ({"model": "m.skops", "data": "d.csv", "members": "m.csv", "attack_params": {"lira": {"seed": 1}}}, "seed"),
        ({"model": "m.skops", "data": "d.csv", "members": "m.csv", "input_shape": (0, 3)}, "positive"),
        ({"model": "m.skops", "members": "m.csv"}, "data"),
    ],
)
def test_bad_configs(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_audit_config(None, **fields)


def test_toml_file_paths_relative_to_it_and_flags_override(tmp_path: Path) -> None:
    (tmp_path / "audit.toml").write_text(
        'model = "forest.skops"\ndata = "data.csv"\nmembers = "members.csv"\nattacks = ["loss"]\n'
        "[service]\nbudget = 100\n[train]\nepochs = 5\n"
    )
    cfg = load_audit_config(tmp_path / "audit.toml", attacks=("lira",), epochs=7)
    assert cfg.model == str(tmp_path / "forest.skops") and cfg.data == str(tmp_path / "data.csv")
    assert cfg.attacks == ("lira",) and cfg.service.budget == 100 and cfg.train.epochs == 7
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_audit_config(tmp_path / "bad.toml")
    (tmp_path / "unknown.toml").write_text('model = "m"\ndata = "d"\nmembers = "m"\nfoo = 1\n')
    with pytest.raises(ConfigError, match="foo"):
        load_audit_config(tmp_path / "unknown.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_audit_config(tmp_path / "missing.toml")


def test_label_only_model_gets_label_only_attacks(tmp_path: Path) -> None:
    """A model that answers labels only (1-nearest neighbour: one-hot rows): the label-only attacks run."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = rng.integers(0, 4, size=600)  # random labels: only memorisation makes members correct
    ids = [f"k{i}" for i in range(600)]
    members = np.arange(200)
    skops_io.dump(KNeighborsClassifier(n_neighbors=1).fit(X[members], y[members]), tmp_path / "knn.skops")
    res = audit(
        model=tmp_path / "knn.skops", data=write_csv(tmp_path / "d.csv", X, y, ids),
        members=write_ids(tmp_path / "m.csv", [ids[i] for i in members]), out=tmp_path / "o", report=False,
        n_shadows=2, n_boot=100,
        trust=("sklearn.metrics._dist_metrics.EuclideanDistance64", "sklearn.neighbors._kd_tree.KDTree"),
    )  # fmt: skip
    rec = res.record
    assert rec["target"]["answers"] == "labels"
    assert set(rec["attacks"]) == {"label-noise", "label-gap"}
    acc_m, acc_n = rec["target"]["member_accuracy"], rec["target"]["nonmember_accuracy"]
    # the gap attack's AUC has a closed form: 0.5 + (accuracy on members - on non-members) / 2
    assert rec["attacks"]["label-gap"]["metrics"]["auc"] == pytest.approx(0.5 + (acc_m - acc_n) / 2, abs=1e-12)
    assert acc_m == 1.0 and rec["attacks"]["label-noise"]["metrics"]["auc"] > 0.75


def test_attack_outcome_takes_membership_as_bools_or_0_1() -> None:
    """Flags and thresholds at each FPR come from the non-members alone, whatever type membership has."""
    from miaudit.studies.audit_results import attack_outcome

    rng = np.random.default_rng(0)
    member = np.arange(400) < 200
    scores = rng.normal(size=400) + member
    as_bool = attack_outcome("x", member, scores, threshold=0.5, n_boot=50, seed=0)
    as_int = attack_outcome("x", member.astype(int), scores, threshold=0.5, n_boot=50, seed=0)
    assert as_int.flagged == as_bool.flagged and as_int.flag_thresholds == as_bool.flag_thresholds
    # at 1% FPR, 2 of the 200 non-members may pass: the threshold is just above the third-highest of them
    third = np.sort(scores[~member])[-3]
    assert third < as_bool.flag_thresholds["0.01"] <= np.nextafter(third, np.inf)
    assert as_bool.flagged["0.01"] == int(np.count_nonzero(scores[member] > third))
