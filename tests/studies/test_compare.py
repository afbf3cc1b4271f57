"""Several attacks on the same targets over seeds: the comparison record and its table."""

from __future__ import annotations

import json

import pytest

from miaudit.errors import ConfigError
from miaudit.studies.compare import interval, run_compare
from miaudit.studies.config import ATTACK_ORDER, AttackConfig, CompareConfig, parse_config
from miaudit.studies.pipeline import run_attack

TINY = dict(
    dataset="digits",
    target_size=150,
    shadow_train_size=150,
    shadow_test_size=100,
    shadows=2,
    epochs=10,
    refs=2,
    engine="loop",  # exact: shadows shared in compare equal an attack's own
)
ATTACKS = ("shokri", "loss", "ml-leaks", "rmia")


@pytest.fixture(scope="module")
def result() -> dict:
    return run_compare(CompareConfig(attacks=",".join(ATTACKS), seeds=2, seed=5, **TINY))


def test_record_layout(result) -> None:
    assert result["seeds"] == [5, 6]
    assert list(result["attacks"]) == list(ATTACKS)
    for name, rec in result["attacks"].items():
        for key in ("auc", "accuracy", "precision", "recall", "balanced_accuracy", "advantage", "queries"):
            assert set(rec[key]) == {"mean", "low", "high", "std", "n"} and rec[key]["n"] == 2, (name, key)
        assert set(rec["tpr_at_fpr"]) == {"0.01", "0.001", "0"}
        assert rec["wall_time_s"]["mean"] > 0
        assert rec["n_members"] == rec["n_nonmembers"] == 150
        for seed in ("5", "6"):
            scores = result["scores"][name][seed]
            assert len(scores["member"]) == len(scores["nonmember"]) == 150
    assert result["attacks"]["shokri"]["queries"]["mean"] == 300
    assert result["attacks"]["rmia"]["queries"]["mean"] > 300  # + the population records z
    assert len(result["per_seed"]) == 2 and set(result["per_seed"][0]["attacks"]) == set(ATTACKS)
    assert set(result["target"]) == {"train_accuracy", "test_accuracy", "generalization_gap"}
    json.loads(json.dumps(result, allow_nan=False))  # strict JSON: no NaN


def test_each_seed_equals_the_attack_command(result) -> None:
    """The target of seed S is ``attack --seed S``'s, and shared shadows equal an attack's own."""
    for name in ("shokri", "ml-leaks", "rmia"):
        single = run_attack(AttackConfig(attack=name, seed=6, **TINY))
        per_seed = result["per_seed"][1]
        assert per_seed["target"]["train_accuracy"] == single["target"]["train_accuracy"]
        assert result["scores"][name]["6"] == single["scores"], name
        assert per_seed["attacks"][name]["auc"] == single["metrics"]["auc"]


def test_intervals_aggregate_the_seeds(result) -> None:
    aucs = [rec["attacks"]["loss"]["auc"] for rec in result["per_seed"]]
    agg = result["attacks"]["loss"]["auc"]
    assert agg["mean"] == pytest.approx(sum(aucs) / 2)
    assert agg["low"] <= agg["mean"] <= agg["high"]
    one = interval([0.7])
    assert one["mean"] == 0.7 and one["low"] is None and one["std"] is None and one["n"] == 1


def test_table_has_a_row_per_attack(result) -> None:
    from rich.console import Console

    from miaudit.cli import compare_table

    console = Console(width=250, record=True)
    console.print(compare_table(result))
    text = console.export_text()
    for name in ATTACKS:
        assert name in text
    for header in ("AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "TPR @ 0% FPR", "queries", "wall time"):
        assert header in text


def test_the_report_can_read_the_record(result, tmp_path) -> None:
    load = pytest.importorskip("miaudit.report.load")
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(result))
    data = load.load_compare(path)
    assert set(data.metrics) == set(ATTACKS) and set(data.scores["rmia"].by_seed) == {"5", "6"}


def test_attack_lists() -> None:
    assert CompareConfig().attacks == ATTACK_ORDER
    assert CompareConfig(attacks="lira, loss,lira").attacks == ("lira", "loss")
    assert CompareConfig(attacks=["all"], seeds=1).seed_list == [0]
    assert CompareConfig(seed=7, seeds=3).seed_list == [7, 8, 9]
    with pytest.raises(ConfigError, match=r"attacks: .*unknown attack 'lyra'; choose one of: shokri, .*rmia"):
        parse_config(CompareConfig, {"attacks": "lira,lyra"})
    with pytest.raises(ConfigError, match="seeds"):
        parse_config(CompareConfig, {"seeds": 0})
