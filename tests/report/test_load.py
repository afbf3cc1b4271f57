"""The loaders: strict about what a report needs, tolerant about extra columns and keys."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from miaudit.errors import ConfigError, DataError, MiauditError
from miaudit.report import ReportError, build_report, load_attack_record, load_compare, load_run
from miaudit.report.load_records import sniff_json


def _rewrite_csv(
    path: Path, *, drop: str | None = None, add: str | None = None, edit: tuple[int, str, str] | None = None
):
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c != drop] + ([add] if add else [])
    if edit is not None:
        line, column, value = edit
        rows[line][column] = value
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, **({add: "extra"} if add else {})})


def _manifest(run: Path, **changes: object) -> None:
    m = json.loads((run / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (run / "manifest.json").write_text(json.dumps(m))


def test_a_complete_run_loads(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.seeds == [0, 1, 2]
    assert run.studies == ["1", "2", "3", "4", "5", "6"]
    assert {r.metric for r in run.summary} >= {"accuracy", "auc", "tpr_at_fpr_0.001", "generalization_gap"}
    assert len(run.results) == 3 * len({r.setting_id for r in run.summary}) * len({r.metric for r in run.summary})
    sid = next(r.setting_id for r in run.summary if r.paper is not None)
    scores = run.scores(sid)
    assert sorted(scores.by_seed) == ["0", "1", "2"]
    member, nonmember = scores.by_seed["0"]
    assert member.dtype == np.float64 and member.shape == nonmember.shape == (300,)
    assert run.compare is not None and set(run.compare.metrics) == {"shokri", "threshold", "lira"}
    assert {f.verdict for f in run.findings} == {"supported", "not supported", "contradicted"}
    assert all(f.auc_verdict for f in run.findings)


def test_report_errors_are_data_errors() -> None:
    assert issubclass(ReportError, DataError) and issubclass(ReportError, MiauditError)


def test_missing_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"does not exist: run `miaudit reproduce --out .*nope` first"):
        load_run(tmp_path / "nope")


def test_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"manifest.json is missing .*this is not a run directory; run `miaudit"):
        build_report(tmp_path)


@pytest.mark.parametrize(
    ("status", "message"),
    [("interrupted", "was interrupted"), ("running", "is still running or was killed")],
)
def test_unfinished_run(broken_run: Path, status: str, message: str) -> None:
    _manifest(broken_run, status=status)
    with pytest.raises(ReportError, match=rf"{message} \(manifest status '{status}'.*rerun the same command"):
        load_run(broken_run)
    assert load_run(broken_run, allow_incomplete=True).manifest["status"] == status


@pytest.mark.parametrize("name", ["results.csv", "summary.csv", "findings.json"])
def test_missing_file(broken_run: Path, name: str) -> None:
    (broken_run / name).unlink()
    with pytest.raises(ReportError, match=rf"{name} is missing in .*interrupted before writing it; rerun the same"):
        load_run(broken_run)


def test_missing_scores_folder(broken_run: Path) -> None:
    import shutil

    shutil.rmtree(broken_run / "scores")
    with pytest.raises(ReportError, match=r"scores/ is missing in .*rerun the same `miaudit reproduce` command"):
        load_run(broken_run)


def test_missing_scores_of_the_best_setting(broken_run: Path) -> None:
    run = load_run(broken_run)
    best = max((r for r in run.summary if r.metric == "auc"), key=lambda r: r.mean)
    (broken_run / "scores" / f"{best.setting_id}.npz").unlink()
    with pytest.raises(ReportError, match=rf"scores/{best.setting_id}.npz is missing .*interrupted"):
        build_report(broken_run, formats=("html",))


def test_scores_file_without_its_nonmembers(broken_run: Path) -> None:
    path = next((broken_run / "scores").glob("*.npz"))
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "nonmember_seed1"}
    np.savez(path, **arrays)
    with pytest.raises(ReportError, match=r"lacks the array 'nonmember_seed1'"):
        load_run(broken_run).scores(path.stem)


def test_missing_column_is_named(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", drop="paper")
    with pytest.raises(ReportError, match=r"summary.csv in .* lacks the column\(s\) 'paper' \(found: study, "):
        load_run(broken_run)


def test_extra_columns_and_keys_are_ignored(broken_run: Path, run_dir: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", add="wall_time_s")
    _rewrite_csv(broken_run / "results.csv", add="engine")
    _manifest(broken_run, engine={"engine": "batched"}, cache="/somewhere")
    assert load_run(broken_run).summary == load_run(run_dir).summary
    assert load_run(broken_run).results == load_run(run_dir).results


def test_value_that_is_not_a_number(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", edit=(1, "mean", "abc"))
    with pytest.raises(ReportError, match=r"summary.csv line 3, column 'mean': 'abc' is not a number"):
        load_run(broken_run)


def test_required_value_that_is_empty(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "results.csv", edit=(0, "value", ""))
    with pytest.raises(ReportError, match=r"results.csv line 2, column 'value' is empty; a number is required"):
        load_run(broken_run)


def test_csv_with_a_header_only(broken_run: Path) -> None:
    text = (broken_run / "results.csv").read_text().splitlines()[0]
    (broken_run / "results.csv").write_text(text + "\n")
    with pytest.raises(ReportError, match=r"results.csv in .* has a header but no rows"):
        load_run(broken_run)


def test_findings_with_an_unknown_verdict(broken_run: Path) -> None:
    data = json.loads((broken_run / "findings.json").read_text())
    data[0]["verdict"] = "maybe"
    (broken_run / "findings.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"findings.json item 0 has verdict 'maybe'; allowed: 'supported'"):
        load_run(broken_run)


def test_truncated_json(broken_run: Path) -> None:
    (broken_run / "findings.json").write_text('[{"id": "F1", ')
    with pytest.raises(ReportError, match=r"findings.json is not valid JSON"):
        load_run(broken_run)


def test_manifest_of_another_format(broken_run: Path) -> None:
    _manifest(broken_run, format=2)
    with pytest.raises(ReportError, match=r"has format 2; this miaudit reads format 1: upgrade miaudit"):
        load_run(broken_run)


def test_manifest_without_seeds(broken_run: Path) -> None:
    _manifest(broken_run, seeds=None)
    with pytest.raises(ReportError, match=r"manifest.json lacks the key\(s\) 'seeds'"):
        load_run(broken_run)


def test_compare_record_without_scores(tmp_path: Path, make_compare) -> None:
    record = make_compare(seeds=(0,), n=20)
    del record["scores"]
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(record))
    with pytest.raises(
        ReportError, match=r"cmp.json lacks the key\(s\) 'scores'; write it again with `miaudit compare"
    ):
        load_compare(path)


def test_compare_record_with_null_intervals(tmp_path: Path, make_compare) -> None:
    record = make_compare(seeds=(0,), n=20)
    record["attacks"]["lira"]["auc"].update(low=None, high=None, std=None)
    record["target"] = {"train_accuracy": {"mean": 0.9, "low": None, "high": None, "std": None, "n": 1}}
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(record))
    data = load_compare(path)
    assert not data.metrics["lira"]["auc"].has_ci
    assert data.target["train_accuracy"].mean == 0.9
    assert sniff_json(path) == "compare"


def test_attack_record_without_scores(tmp_path: Path, make_attack) -> None:
    record = make_attack(n=20)
    del record["scores"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReportError, match=r"a.json lacks the key\(s\) 'scores'; write it again with `miaudit attack"):
        load_attack_record(path)


def test_attack_record_with_nan_scores(tmp_path: Path, make_attack) -> None:
    record = make_attack(n=20)
    record["scores"]["member"][3] = float("nan")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReportError, match=r"scores.member holds NaN or infinite scores"):
        load_attack_record(path)


def test_json_that_is_no_record(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ReportError, match=r"neither a `miaudit attack --json` record .* nor a `miaudit compare"):
        build_report(path)


def test_json_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"does not exist: write it with `miaudit attack --json"):
        build_report(tmp_path / "missing.json")


def test_unknown_format(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown report format 'pdf'; allowed: 'html', 'md' or 'both'"):
        build_report(run_dir, formats=("pdf",))


def test_out_that_is_a_file(tmp_path: Path, make_attack) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(make_attack(n=20)))
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"cannot write the report into .*taken: it is a file"):
        build_report(path, out=blocker)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _rewrite_csv(r / "summary.csv", edit=(0, "n_shadows", "4.5")),
         r"summary.csv line 2, column 'n_shadows': '4.5' is not a whole number"),
        (lambda r: _rewrite_csv(r / "results.csv", edit=(4, "setting_id", " ")),
         r"results.csv line 6, column 'setting_id' is empty"),
        (lambda r: _write(r / "findings.json", '{"id": "F1"}'), r"findings.json must hold a JSON list of findings"),
        (lambda r: _write(r / "findings.json", '["F1"]'), r"findings.json item 0 must be an object; got str"),
        (lambda r: _write(r / "findings.json", '[{"id": "F1", "study": "1"}]'),
         r"findings.json item 0 lacks the key\(s\) 'claim', 'verdict'"),
        (lambda r: _write(r / "findings.json", '[{"id": "F", "study": "1", "claim": "c", "verdict": "supported", '
                                               '"difference": "big"}]'),
         r"findings.json item 0, key 'difference': 'big' is not a number"),
        (lambda r: _write(r / "manifest.json", "[1, 2]"), r"manifest.json must hold a JSON object; got list"),
        (lambda r: _manifest(r, seeds=[]), r"'seeds' must be a non-empty list; got \[\]"),
        (lambda r: [p.unlink() for p in (r / "scores").glob("*.npz")], r"scores/ in .* holds no .npz files"),
    ],
)  # fmt: skip
def test_malformed_run_directory(broken_run: Path, damage, message: str) -> None:
    damage(broken_run)
    with pytest.raises(ReportError, match=message):
        load_run(broken_run)


def test_run_directory_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_text("x")
    with pytest.raises(ReportError, match=r"run.txt is not a directory: pass the folder written by `miaudit reproduce"):
        load_run(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip", r"is not a readable .npz file"),
        (None, r"holds no arrays named member_seed<S>/nonmember_seed<S> \(found: scores\)"),
    ],
)
def test_unreadable_scores_file(broken_run: Path, content: bytes | None, message: str) -> None:
    path = next((broken_run / "scores").glob("*.npz"))
    if content is None:
        np.savez(path, scores=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ReportError, match=message):
        load_run(broken_run).scores(path.stem)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(attacks={}), r"'attacks' must be a non-empty object of attack name -> metrics"),
        (lambda d: d["attacks"]["lira"].pop("auc"), r"attacks.lira lacks 'auc'"),
        (lambda d: d["attacks"]["lira"].update(auc={"low": 0.5}), r"attacks.lira.auc must be an object with at least"),
        (lambda d: d.update(scores=[1]), r"'scores' must be an object of attack -> seed -> scores"),
        (lambda d: d["scores"].update(lira={}), r"scores.lira must map each seed to its scores"),
        (lambda d: d["scores"]["lira"].update({"0": {"member": [1.0]}}),
         r"scores.lira.0 must be an object with 'member' and 'nonmember' score lists"),
        (lambda d: d["scores"]["lira"]["0"].update(member=[[1.0, 2.0]]),
         r"scores.lira.0.member must be a non-empty 1-d list of scores; got shape \(1, 2\)"),
        (lambda d: d["scores"]["lira"]["0"].update(member=["a"]), r"scores.lira.0.member must be a list of numbers"),
    ],
)  # fmt: skip
def test_malformed_compare_record(tmp_path: Path, make_compare, change, message: str) -> None:
    record = make_compare(seeds=(0,), n=20)
    change(record)
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReportError, match=message):
        load_compare(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1, 2], r"a.json must hold a JSON object; write it again with `miaudit attack --json PATH`"),
        ({"config": {}, "target": {}, "metrics": {"auc": 0.5}, "scores": {}},
         r"'metrics' lacks 'accuracy', 'tpr_at_fpr'"),
    ],
)  # fmt: skip
def test_malformed_attack_record(tmp_path: Path, record: object, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReportError, match=message):
        load_attack_record(path)


def test_no_format(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"formats is empty; pass 'html', 'md' or both"):
        build_report(run_dir, formats=())
