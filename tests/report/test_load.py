"""The one reader of run directories: strict about what a report needs, tolerant of extra columns and keys."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from miaudit.errors import ConfigError, DataError, MiauditError
from miaudit.report import Manifest, ReportError, StudyInfo, build_report, load_run
from miaudit.report.load import _Setting
from miaudit.report.records import SETTING_COLUMNS


def _rewrite_csv(
    path: Path, *, drop: str | None = None, add: str | None = None, edit: tuple[int, str, str] | None = None
) -> None:
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


def _findings(run: Path, change) -> None:
    data = json.loads((run / "findings.json").read_text())
    change(data)
    (run / "findings.json").write_text(json.dumps(data))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


# ------------------------------------------------------------------------------------ complete runs
def test_a_reproduce_run_loads_into_typed_records(repro_run: Path, summary_of) -> None:
    run = load_run(repro_run)
    m = run.manifest
    assert isinstance(m, Manifest) and (m.format, m.kind, m.status) == (2, "reproduce", "complete")
    assert run.seeds == (0, 1, 2) and run.studies == ["1", "7"]
    description = "Which attack leaks most from the same target?"
    assert m.study("7") == StudyInfo("7", "Attacks on the simple network", "", description)
    assert run.study_info("99").title == "Study 99"  # a study the manifest does not describe
    assert {r.attack for r in run.summary if r.study == "7"} == {"shokri", "loss", "lira"}
    assert {r.attack for r in run.summary if r.study == "1"} == {"shokri"}
    loss = next(r for r in run.summary if r.attack == "loss")
    assert loss.attack_model == "" and loss.n_shadows is None and loss.target_size == 1000
    text = summary_of(repro_run)
    assert len(run.summary) == len(text)
    first = text[0]
    assert run.summary[0].mean == float(first["mean"]) and run.summary[0].setting_id == first["setting_id"]
    n_settings = len({r.setting_id for r in run.summary})
    assert len(run.results) == 3 * n_settings * len({r.metric for r in run.summary})
    assert {"queries", "attack_time_s"} <= {r.metric for r in run.results}
    scores = run.scores(next(r.setting_id for r in run.summary if r.attack == "lira"))
    assert sorted(scores.by_seed) == ["0", "1", "2"]
    member, nonmember = scores.by_seed["0"]
    assert member.dtype == np.float64 and member.shape == nonmember.shape == (200,)
    f1 = next(f for f in run.findings if f.id == "F1")
    assert (f1.verdict, f1.margin, f1.seeds_needed) == ("inconclusive", 0.01, 40)
    assert f1.auc is not None and f1.auc.mean == pytest.approx(-0.006) and f1.auc_verdict == "inconclusive"
    assert next(f for f in run.findings if f.id == "F1b").seeds_needed is None


def test_compare_and_attack_runs_load(compare_run: Path, attack_run: Path) -> None:
    cmp = load_run(compare_run)
    assert cmp.kind == "compare" and cmp.studies == ["compare"] and cmp.findings == ()
    assert cmp.study_info("compare").title == "Attack comparison"
    assert {r.attack for r in cmp.summary} == {"shokri", "loss", "lira"}
    assert all(r.n == 3 and r.low <= r.mean <= r.high for r in cmp.summary if r.metric == "auc")
    one = load_run(attack_run)
    assert one.kind == "attack" and one.seeds == (3,) and len({r.setting_id for r in one.summary}) == 1
    assert all(r.n == 1 and math.isnan(r.low) and math.isnan(r.high) for r in one.summary)
    assert {r.seed for r in one.results} == {3}


def test_the_csv_record_matches_the_format() -> None:
    assert _Setting._fields == SETTING_COLUMNS


def test_report_errors_are_data_errors() -> None:
    assert issubclass(ReportError, DataError) and issubclass(ReportError, MiauditError)


def test_extra_columns_and_keys_are_ignored(broken_run: Path, repro_run: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", add="wall_time_s")
    _rewrite_csv(broken_run / "results.csv", add="engine")
    _manifest(broken_run, engine={"engine": "batched"}, cache="/somewhere")
    _findings(broken_run, lambda d: d[0].update(new_key=[1, 2]))
    assert load_run(broken_run).summary == load_run(repro_run).summary
    assert load_run(broken_run).results == load_run(repro_run).results
    assert load_run(broken_run).findings == load_run(repro_run).findings


# --------------------------------------------------------------------------------------- format 1
def test_a_format_1_run_is_read_with_the_shokri_attack(broken_run: Path) -> None:
    """Runs written before the attack column: every row is the shadow-model attack; old verdicts are accepted."""
    _rewrite_csv(broken_run / "summary.csv", drop="attack")
    _rewrite_csv(broken_run / "results.csv", drop="attack")
    _manifest(broken_run, format=1, kind=None, studies=None)
    _findings(broken_run, lambda d: d[0].update(verdict="not supported", margin=None, seeds_needed=None))
    run = load_run(broken_run)
    assert run.kind == "reproduce" and run.manifest.studies == ()
    assert {r.attack for r in run.summary} == {r.attack for r in run.results} == {"shokri"}
    assert run.findings[0].verdict == "not supported" and math.isnan(run.findings[0].margin)
    assert run.study_info("1").title == "Study 1"


def test_format_2_needs_the_attack_column(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "results.csv", drop="attack")
    with pytest.raises(ReportError, match=r"results.csv in .* lacks the column\(s\) 'attack' \(found: study, "
                                          r".*format 2: run `miaudit reproduce --out DIR`"):  # fmt: skip
        load_run(broken_run)


@pytest.mark.parametrize("fmt", [3, 0, "2", None, True])
def test_unknown_format(broken_run: Path, fmt: object) -> None:
    if fmt is None:
        m = json.loads((broken_run / "manifest.json").read_text())
        del m["format"]
        (broken_run / "manifest.json").write_text(json.dumps(m))
    else:
        _manifest(broken_run, format=fmt)
    with pytest.raises(ReportError, match=r"has format .*; this miaudit reads formats 1 and 2: upgrade miaudit, or "
                                          r"rerun `miaudit reproduce --out DIR`"):  # fmt: skip
        load_run(broken_run)


# --------------------------------------------------------------------------------- wrong inputs
@pytest.mark.parametrize("exists", [True, False])
def test_a_json_file_is_refused_with_the_fix(tmp_path: Path, exists: bool) -> None:
    path = tmp_path / "compare.json"
    if exists:
        path.write_text('{"attacks": {}, "scores": {}}')
    message = (
        r"compare.json is a JSON file, and reports are built from run directories: pass a run directory \(written "
        r"by `miaudit reproduce --out DIR`, `miaudit compare --out DIR` or `miaudit attack --out DIR`\) instead"
    )
    with pytest.raises(ReportError, match=message):
        build_report(path)


def test_missing_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"run directory .*nope does not exist: run `miaudit reproduce --out DIR`"):
        load_run(tmp_path / "nope")


def test_run_directory_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_text("x")
    with pytest.raises(ReportError, match=r"run.txt is not a directory: pass the folder written by `miaudit reproduce"):
        load_run(path)


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
    assert load_run(broken_run, allow_incomplete=True).manifest.status == status


@pytest.mark.parametrize("name", ["results.csv", "summary.csv", "findings.json"])
def test_missing_file(broken_run: Path, name: str) -> None:
    (broken_run / name).unlink()
    with pytest.raises(ReportError, match=rf"{name} is missing in .*interrupted before writing it; rerun the command"):
        load_run(broken_run)


def test_missing_scores_folder(broken_run: Path) -> None:
    shutil.rmtree(broken_run / "scores")
    with pytest.raises(ReportError, match=r"scores/ is missing in .*rerun the command that wrote the run directory"):
        load_run(broken_run)


def test_missing_scores_of_a_compared_attack(broken_run: Path) -> None:
    """The comparison's ROC needs every attack's scores: a missing file names the setting."""
    run = load_run(broken_run)
    sid = next(r.setting_id for r in run.summary if r.attack == "loss")
    (broken_run / "scores" / f"{sid}.npz").unlink()
    with pytest.raises(ReportError, match=rf"scores/{sid}.npz is missing .*interrupted before it stored the scores"):
        build_report(broken_run, formats=("html",))


def test_missing_column_is_named(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", drop="paper")
    with pytest.raises(ReportError, match=r"summary.csv in .* lacks the column\(s\) 'paper' \(found: study, "):
        load_run(broken_run)


def test_value_that_is_not_a_number(broken_run: Path) -> None:
    _rewrite_csv(broken_run / "summary.csv", edit=(1, "mean", "abc"))
    with pytest.raises(ReportError, match=r"summary.csv line 3, column 'mean': 'abc' is not a number; rerun"):
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


def test_truncated_json(broken_run: Path) -> None:
    (broken_run / "findings.json").write_text('[{"id": "F1", ')
    with pytest.raises(ReportError, match=r"findings.json is not valid JSON .*rerun the command"):
        load_run(broken_run)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _rewrite_csv(r / "summary.csv", edit=(0, "n_shadows", "4.5")),
         r"summary.csv line 2, column 'n_shadows': '4.5' is not a whole number"),
        (lambda r: _rewrite_csv(r / "results.csv", edit=(4, "setting_id", " ")),
         r"results.csv line 6, column 'setting_id' is empty"),
        (lambda r: _rewrite_csv(r / "results.csv", edit=(2, "attack", "")),
         r"results.csv line 4, column 'attack' is empty"),
        (lambda r: _rewrite_csv(r / "results.csv", edit=(0, "seed", "one")),
         r"results.csv line 2, column 'seed': 'one' is not a number"),
        (lambda r: _write(r / "findings.json", '{"id": "F1"}'), r"findings.json must hold a JSON list of findings"),
        (lambda r: _write(r / "findings.json", '["F1"]'), r"findings.json item 0 must be an object; got str"),
        (lambda r: _write(r / "findings.json", '[{"id": "F1", "study": "1"}]'),
         r"findings.json item 0 lacks the key\(s\) 'claim', 'verdict'"),
        (lambda r: _findings(r, lambda d: d[0].update(verdict="maybe")),
         r"findings.json item 0 has verdict 'maybe'; allowed: 'supported', 'contradicted', 'negligible'"),
        (lambda r: _findings(r, lambda d: d[0].update(difference="big")),
         r"findings.json item 0, key 'difference': 'big' is not a number"),
        (lambda r: _findings(r, lambda d: d[1].update(margin=[0.01])),
         r"findings.json item 1, key 'margin': \[0.01\] is not a number"),
        (lambda r: _findings(r, lambda d: d[0].update(seeds_needed=2.5)),
         r"findings.json item 0, key 'seeds_needed': 2.5 is not a whole number"),
        (lambda r: _write(r / "manifest.json", "[1, 2]"), r"manifest.json must hold a JSON object; got list"),
        (lambda r: _manifest(r, seeds=[]), r"'seeds' must be a non-empty list of whole numbers; got \[\]"),
        (lambda r: _manifest(r, seeds=["0"]), r"'seeds' must be a non-empty list of whole numbers; got \['0'\]"),
        (lambda r: _manifest(r, kind="audit"), r"'kind' is 'audit'; allowed: 'reproduce', 'compare', 'attack'"),
        (lambda r: _manifest(r, status="done"), r"'status' is 'done'; allowed: 'running', 'complete'"),
        (lambda r: _manifest(r, kind=None, seeds=None),
         r"manifest.json lacks the key\(s\) 'seeds', 'kind' that format 2 requires"),
        (lambda r: _manifest(r, studies=["1", "7"]), r"'studies' must be an object of study id -> \{title, "),
        (lambda r: _manifest(r, studies={"7": {"paper_ref": "x"}}),
         r"studies.7 must be an object with a non-empty 'title'"),
        (lambda r: [p.unlink() for p in (r / "scores").glob("*.npz")], r"scores/ in .* holds no .npz files"),
    ],
)  # fmt: skip
def test_malformed_run_directory(broken_run: Path, damage, message: str) -> None:
    damage(broken_run)
    with pytest.raises(ReportError, match=message):
        load_run(broken_run)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (b"not a zip", r"is not a readable .npz file"),
        ({"scores": np.zeros(3)}, r"holds no arrays named member_seed<S>/nonmember_seed<S> \(found: scores\)"),
        ({"member_seed0": np.zeros(3)}, r"lacks the array 'nonmember_seed0' \(the other side of seed 0\)"),
        ({"member_seed0": np.r_[0.1, np.nan], "nonmember_seed0": np.zeros(2)},
         r"member_seed0 holds NaN or infinite scores"),
        ({"member_seed0": np.zeros((2, 2)), "nonmember_seed0": np.zeros(2)},
         r"member_seed0 must be a non-empty 1-d array of scores; got shape \(2, 2\)"),
        ({"member_seed0": np.array(["a", "b"]), "nonmember_seed0": np.zeros(2)},
         r"member_seed0 must hold numbers; got dtype <U1"),
    ],
)  # fmt: skip
def test_unreadable_scores_file(broken_run: Path, arrays: bytes | dict, message: str) -> None:
    path = next((broken_run / "scores").glob("*.npz"))
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    else:
        np.savez(path, **arrays)
    with pytest.raises(ReportError, match=message):
        load_run(broken_run).scores(path.stem)


def test_unknown_report_format(repro_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown report format 'pdf'; allowed: 'html', 'md' or 'both'"):
        build_report(repro_run, formats=("pdf",))


def test_no_report_format(repro_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"formats is empty; pass 'html', 'md' or both"):
        build_report(repro_run, formats=())


def test_out_that_is_a_file(attack_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"cannot write the report into .*taken: it is a file"):
        build_report(attack_run, out=blocker)
