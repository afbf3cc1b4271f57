"""The audit report: audit directories (docs/audit-format.md) written here, read back and drawn.

``write_audit_dir`` writes an audit directory exactly as the format describes it: audit.json, records.csv,
records.parquet and exposed.npz. Scores are drawn from seeded generators (members shifted up by the attack's
strength, one class more exposed than the others); every metric, interval, flag count, slice and verdict in
audit.json is computed from those very scores with miaudit.metrics, so the report's numbers can be checked
against the file.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from miaudit.metrics import auc, bootstrap_ci, membership_metrics, threshold_for_fpr, tpr_at_fpr
from miaudit.report import (
    ReportError,
    audit_document,
    build_document,
    build_report,
    load_audit,
    write_audit_report,
)
from miaudit.report.audit_load import RECORD_COLUMNS, read_records
from miaudit.report.audit_report import _as_image, accuracy_warning
from miaudit.report.document import Document, Paragraph, Strong, Table
from miaudit.report.markdown import md_escape

PNG = b"\x89PNG\r\n\x1a\n"
IMAGE_ATTACKS = {"lira": 2.5, "rmia": 0.8, "loss": 0.0}  # name -> how far members' scores sit above the rest
TABLE_ATTACKS = {"shokri": 1.6, "loss": 0.0}
FEATURE_NAMES = ("sepal length", "sepal width", "petal length", "petal width", "stem", "leaf", "noise")
NO_LEAK = "no leak measurable with this attacker and budget"


# ------------------------------------------------------------------------------------ writer
def _flags(scores: np.ndarray, member: np.ndarray, level: float) -> np.ndarray:
    return scores >= threshold_for_fpr(scores[~member], level)


def _slice(member: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    both = member.any() and not member.all()
    return {
        "n_members": int(member.sum()),
        "n_nonmembers": int((~member).sum()),
        "auc": float(auc(member, scores)) if both else None,
        "tpr_at_fpr_0.01": float(tpr_at_fpr(member, scores, 0.01)) if both else None,
    }


def _attack(name: str, scores: np.ndarray, member: np.ndarray, labels: np.ndarray, correct: np.ndarray, seed: int):
    n1 = int(member.sum())
    metrics = membership_metrics(member, scores, threshold=threshold_for_fpr(scores[~member], 0.01))
    intervals: dict[str, Any] = {"tpr_at_fpr": {}}
    _, lo, hi = bootstrap_ci(member, scores, auc, n_boot=200, seed=seed)
    intervals["auc"] = [lo, hi]
    for key, level in (("0.01", 0.01), ("0.001", 0.001)):
        _, lo, hi = bootstrap_ci(member, scores, lambda y, s, v=level: tpr_at_fpr(y, s, v), n_boot=200, seed=seed)
        intervals["tpr_at_fpr"][key] = [lo, hi]
    flagged = {k: int((_flags(scores, member, v) & member).sum()) for k, v in (("0.01", 0.01), ("0.001", 0.001))}
    leaks = intervals["tpr_at_fpr"]["0.001"][0] > 0.001
    return {
        "params": {"n_refs": 8} if name in ("lira", "rmia") else {},
        "threshold": threshold_for_fpr(scores[~member], 0.01),
        "metrics": metrics,
        "intervals": intervals,
        "flagged": flagged,
        "slices": {
            "class": {str(c): _slice(member[labels == c], scores[labels == c]) for c in dict.fromkeys(labels)},
            "prediction": {
                "correct": _slice(member[correct], scores[correct]),
                "wrong": _slice(member[~correct], scores[~correct]),
            },
        },
        "queries": 2 * member.size if name in ("lira", "rmia") else member.size,
        "timings": {"fit": 3.5 if name == "lira" else 0.2, "score": 0.4},
        "verdict": f"leaks: at 0.1% FPR the attack finds {flagged['0.001']} of {n1} members" if leaks else NO_LEAK,
        "_leaks": leaks,
    }


def write_audit_dir(
    path: Path,
    *,
    image: bool = True,
    seed: int = 0,
    attacks: dict[str, float] | None = None,
    member_accuracy: float = 1.0,
    nonmember_accuracy: float = 0.9,
    answers: str = "probabilities",
    n: int = 200,
) -> dict[str, Any]:
    """Write an audit directory of ``n`` members and ``n`` non-members; return its audit.json as a dict."""
    rng = np.random.default_rng(seed)
    attacks = attacks or (IMAGE_ATTACKS if image else TABLE_ATTACKS)
    classes = [str(c) for c in range(10)] if image else ["setosa", "versicolor", "virginica"]
    shape = [8, 8] if image else None
    n_features = 64 if image else len(FEATURE_NAMES)
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    class_index = rng.integers(0, len(classes), size=2 * n)
    labels = np.array(classes)[class_index]
    right = np.where(member, rng.random(2 * n) < member_accuracy, rng.random(2 * n) < nonmember_accuracy)
    predicted = np.where(right, class_index, (class_index + rng.integers(1, len(classes), 2 * n)) % len(classes))
    correct = predicted == class_index
    ids = np.array([f"r{i:04d}" for i in rng.permutation(2 * n)])
    if image:  # a bright stroke whose place depends on the class, and noise, values 0-16 like scikit-learn's digits
        X = rng.uniform(0, 3, size=(2 * n, 8, 8))
        for i, c in enumerate(class_index):
            X[i, c % 8, :] += 12
        X = X.reshape(2 * n, 64).clip(0, 16).astype(np.float32)
    else:
        X = (rng.normal(size=(2 * n, n_features)) + class_index[:, None]).astype(np.float32)
    exposed_class = classes[3 % len(classes)]
    record_rows: list[dict[str, Any]] = []
    npz: dict[str, np.ndarray] = {"record_shape": np.array(shape or [], dtype=np.int64)}
    audit_attacks: dict[str, Any] = {}
    for k, (name, strength) in enumerate(attacks.items()):
        bonus = np.where(labels == exposed_class, 1.0, 0.0) * (strength > 0)
        scores = rng.normal(size=2 * n) + member * (strength + bonus)
        audit_attacks[name] = _attack(name, scores, member, labels, correct, seed + k)
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(2 * n, dtype=np.int64)
        rank[order] = np.arange(1, 2 * n + 1)
        f1, f01 = _flags(scores, member, 0.01), _flags(scores, member, 0.001)
        for i in order:
            record_rows.append(
                {"id": ids[i], "label": labels[i], "class_index": int(class_index[i]), "member": bool(member[i]),
                 "predicted": int(predicted[i]), "correct": bool(correct[i]), "attack": name,
                 "score": float(scores[i]), "rank": int(rank[i]),
                 "likelihood_ratio": float(scores[i]) if name == "lira" else None,
                 "flagged_fpr_0.01": bool(f1[i]), "flagged_fpr_0.001": bool(f01[i])}
            )  # fmt: skip
        top = [i for i in order if member[i]][:32]
        npz[f"ids_{name}"] = ids[top]
        npz[f"X_{name}"] = X[top]
        npz[f"scores_{name}"] = scores[top]
    record_rows.sort(key=lambda r: (r["attack"], r["rank"]))
    leaking = {a: v for a, v in audit_attacks.items() if v.pop("_leaks")}
    key = lambda a: (audit_attacks[a]["metrics"]["tpr_at_fpr"]["0.001"], audit_attacks[a]["metrics"]["auc"])  # noqa: E731
    if leaking:
        best = max(leaking, key=key)
        text = f"leaks: at 0.1% FPR {best} finds {audit_attacks[best]['flagged']['0.001']} of {n} members"
        verdict = {"leaks": True, "text": text, "attack": best}
    else:
        verdict = {"leaks": False, "text": NO_LEAK, "attack": max(audit_attacks, key=key)}
    data_file = "digits.csv" if image else "flowers.csv"
    audit = {
        "format": 1,
        "kind": "audit",
        "status": "complete",
        "created": "2026-11-29T23:40:00+00:00",
        "finished": "2026-11-29T23:41:10+00:00",
        "command": f"miaudit audit --model model.skops --data {data_file} --members members.csv --out {path.name}",
        "config": {"model": "model.skops", "data": data_file, "attacks": list(attacks), "seed": seed},
        "seed": seed,
        "data": {
            "source": data_file, "n_records": 3 * n, "n_features": n_features, "n_classes": len(classes),
            "classes": classes, "record_shape": shape, "n_members": n, "n_nonmembers": n, "n_population": n,
            "population_source": f"rest of {data_file}",
            **({} if image else {"feature_names": list(FEATURE_NAMES)}),
        },
        "target": {
            "source": "model.skops", "family": "sklearn", "description": "RandomForestClassifier(n_estimators=50)",
            "output_kind": "probabilities", "answers": answers, "member_accuracy": member_accuracy,
            "nonmember_accuracy": nonmember_accuracy, "generalization_gap": member_accuracy - nonmember_accuracy,
        },
        "shadows": {"family": "sklearn", "description": "clones of RandomForestClassifier(n_estimators=50)"},
        "attacks": audit_attacks,
        "verdict": verdict,
        "queries": {"total": 4 * n, "sent": 4 * n, "cached": 0, "budget": None},
        "timings": {"load": 0.4, "total": 70.2},
        "versions": {"miaudit": "0.1.0", "python": "3.11.7", "numpy": np.__version__},
        "hardware": {"cpu": "AMD EPYC", "cores": 2},
    }  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    (path / "audit.json").write_text(json.dumps(audit, indent=2), encoding="utf-8")
    with (path / "records.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RECORD_COLUMNS)
        writer.writeheader()
        for r in record_rows:
            writer.writerow(
                {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()}
            )
    pq.write_table(pa.Table.from_pylist(record_rows), path / "records.parquet")
    np.savez(path / "exposed.npz", **npz)
    return audit


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def image_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("audit") / "digits-audit"
    return path, write_audit_dir(path, image=True, seed=0)


@pytest.fixture(scope="module")
def table_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("audit") / "flowers-audit"
    return path, write_audit_dir(path, image=False, seed=1)


@pytest.fixture(scope="module")
def image_built(image_audit: tuple[Path, dict[str, Any]]) -> dict[str, Path]:
    return build_report(image_audit[0])


@pytest.fixture
def damaged(image_audit: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A private copy of the image audit (without its report), to damage."""
    copy = tmp_path / "audit"
    shutil.copytree(image_audit[0], copy, ignore=shutil.ignore_patterns("report*", "figures"))
    return copy


def _edit_json(path: Path, **changes: Any) -> None:
    raw = json.loads((path / "audit.json").read_text())
    for k, v in changes.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    (path / "audit.json").write_text(json.dumps(raw))


def _table(doc: Document, title: str) -> Table:
    (table,) = [t for t in doc.tables() if t.title == title]
    return table


def _bracket(point: float, bounds: list[float]) -> str:
    return f"{point:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -------------------------------------------------------------------------------- the fixture
def test_the_fixture_leaks_where_it_should_and_is_seeded(tmp_path: Path) -> None:
    a = write_audit_dir(tmp_path / "a", seed=5, n=60)
    b = write_audit_dir(tmp_path / "b", seed=5, n=60)
    c = write_audit_dir(tmp_path / "c", seed=6, n=60)
    assert a["attacks"] == b["attacks"]
    assert a["attacks"]["lira"]["metrics"]["auc"] != c["attacks"]["lira"]["metrics"]["auc"]
    assert a["attacks"]["lira"]["metrics"]["auc"] > 0.9
    assert abs(a["attacks"]["loss"]["metrics"]["auc"] - 0.5) < 0.15


def test_image_fixture_verdicts(image_audit: tuple[Path, dict[str, Any]]) -> None:
    _, audit = image_audit
    assert audit["verdict"]["leaks"] and audit["verdict"]["attack"] == "lira"
    assert audit["attacks"]["loss"]["verdict"] == NO_LEAK
    assert audit["attacks"]["lira"]["metrics"]["auc"] > 0.95


# ------------------------------------------------------------------------------------ reading
def test_parquet_and_csv_hold_the_same_records(image_audit: tuple[Path, dict[str, Any]]) -> None:
    path, _ = image_audit
    a, b = read_records(path / "records.parquet"), read_records(path / "records.csv")
    assert len(a) == len(b) == 3 * 400 and a.attacks == b.attacks == ("lira", "loss", "rmia")
    for col in ("id", "label", "class_index", "member", "predicted", "correct", "rank", "flagged_at_1"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    np.testing.assert_allclose(a.score, b.score)
    np.testing.assert_allclose(a.likelihood_ratio, b.likelihood_ratio)  # NaN where empty, in both
    assert (
        np.isnan(a.of_attack("loss").likelihood_ratio).all() and np.isfinite(a.of_attack("lira").likelihood_ratio).all()
    )


def test_loaded_audit(image_audit: tuple[Path, dict[str, Any]]) -> None:
    path, audit = image_audit
    data = load_audit(path / "audit.json")  # the file itself is accepted too
    assert data.path == path and data.complete and data.data.is_image and data.data.record_shape == (8, 8)
    lira = audit["attacks"]["lira"]
    best = data.strongest()
    assert best is not None and best.name == "lira"
    assert best.auc.mean == lira["metrics"]["auc"] and (best.auc.low, best.auc.high) == tuple(lira["intervals"]["auc"])
    assert best.flagged_at_01 == lira["flagged"]["0.001"] and best.time_s == pytest.approx(3.9)
    assert data.exposed["lira"].X.shape == (32, 64) and data.exposed["lira"].ids[0] == str(
        next(
            r for r in csv.DictReader((path / "records.csv").open()) if r["attack"] == "lira" and r["member"] == "true"
        )["id"]
    )


# ------------------------------------------------------------------------------ image report
def test_image_report_files_figures_and_verdict(
    image_audit: tuple[Path, dict[str, Any]], image_built: dict[str, Path]
) -> None:
    path, audit = image_audit
    assert image_built == {"html": path / "report.html", "md": path / "report.md"}
    names = {p.stem for p in (path / "figures").glob("*.png")}
    assert names == {"audit_roc_loglog", "audit_roc_linear", "strongest_score_histogram", "most_exposed_records"}
    for p in (path / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == PNG
    html, md = _text(image_built["html"]), _text(image_built["md"])
    verdict = audit["verdict"]["text"]
    assert verdict.startswith("leaks: at 0.1% FPR lira finds ")
    assert f"<strong>{verdict}</strong>" in html and f"**{verdict}**" in md
    assert "is not a proof of privacy" in html and "is not a proof of privacy" in md
    assert html.index(verdict) < html.index("The target</h2>")  # the verdict comes first
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # self-contained
    for name in names:
        assert f"(figures/{name}.png)" in md


def test_attack_table_numbers_come_from_audit_json(image_audit: tuple[Path, dict[str, Any]]) -> None:
    path, audit = image_audit
    doc, out = build_document(path)
    assert out == path
    table = _table(doc, "The attacks, strongest first")
    assert [r[0] for r in table.rows] == ["lira", "rmia", "loss"]
    for row in table.rows:
        a = audit["attacks"][row[0]]
        m, iv = a["metrics"], a["intervals"]
        assert row[1] == _bracket(m["auc"], iv["auc"])
        assert row[2] == _bracket(m["tpr_at_fpr"]["0.01"], iv["tpr_at_fpr"]["0.01"])
        assert row[3] == _bracket(m["tpr_at_fpr"]["0.001"], iv["tpr_at_fpr"]["0.001"])
        assert row[4] == f"{a['flagged']['0.01']} of 200" and row[5] == f"{a['flagged']['0.001']} of 200"
        assert row[6] == f"{a['queries']:,}"
    assert table.rows[0][7] == "3.9 s"
    md = _text(build_report(path, formats=("md",), out=path / "md-only")["md"])
    assert " | ".join(md_escape(c) for c in table.rows[0]) in md


def test_slices_name_the_most_exposed_class(image_audit: tuple[Path, dict[str, Any]]) -> None:
    path, audit = image_audit
    doc, _ = build_document(path)
    by_class = audit["attacks"]["lira"]["slices"]["class"]
    top = max(by_class, key=lambda c: (by_class[c]["auc"], by_class[c]["tpr_at_fpr_0.01"]))
    assert top == "3"  # the fixture makes class 3 the most exposed
    text = [b for s in doc.sections for b in s.blocks if isinstance(b, Paragraph)]
    assert any(p.parts[:2] == ("The most exposed class is ", Strong("3")) for p in text)
    table = _table(doc, "lira by class")
    assert [r[0] for r in table.rows] == [str(c) for c in range(10)]
    row = table.rows[3]
    s = by_class["3"]
    assert row == ("3", f"{s['n_members'] + s['n_nonmembers']:,}", f"{s['n_members']:,}", f"{s['n_nonmembers']:,}",
                   f"{s['auc']:.3f}", f"{s['tpr_at_fpr_0.01']:.3f}")  # fmt: skip
    assert [r[0] for r in _table(doc, "lira by prediction").rows] == ["correct", "wrong"]


def test_slices_are_computed_from_records_when_not_stored(damaged: Path) -> None:
    raw = json.loads((damaged / "audit.json").read_text())
    stored = _table(audit_document(load_audit(damaged)), "lira by class")
    del raw["attacks"]["lira"]["slices"]
    (damaged / "audit.json").write_text(json.dumps(raw))
    assert _table(audit_document(load_audit(damaged)), "lira by class").rows == stored.rows


def test_target_section_and_no_warning_for_a_healthy_target(image_built: dict[str, Path]) -> None:
    html = _text(image_built["html"])
    assert "RandomForestClassifier(n_estimators=50)" in html and "accuracy on non-members" in html
    assert "scaling mismatch" not in html and "deliberate output defence" not in html
    assert "rest of digits.csv" in html and "miaudit audit --model model.skops --data digits.csv" in html


# ------------------------------------------------------------------------------ table report
def test_table_report_shows_rows_not_images(table_audit: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, audit = table_audit
    built = build_report(path, out=tmp_path / "out")
    names = {p.stem for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert names == {"audit_roc_loglog", "audit_roc_linear", "strongest_score_histogram"}
    html, md = _text(built["html"]), _text(built["md"])
    assert audit["verdict"]["text"] in html and audit["verdict"]["text"] in md
    doc, _ = build_document(path)
    best = audit["verdict"]["attack"]
    table = _table(doc, f"The 10 members most exposed to {best}")
    assert table.columns == ("id", "label", "score", "rank", *FEATURE_NAMES[:6])
    npz = np.load(path / "exposed.npz")
    records = {r["id"]: r for r in csv.DictReader((path / "records.csv").open()) if r["attack"] == best}
    for k, row in enumerate(table.rows):
        rid = str(npz[f"ids_{best}"][k])
        assert row[:4] == (rid, records[rid]["label"], f"{float(records[rid]['score']):.4g}", records[rid]["rank"])
        assert row[4:] == tuple(f"{v:.4g}" for v in npz[f"X_{best}"][k, :6])
    assert table.caption == "The first 6 of 7 features."
    assert [int(r[3]) for r in table.rows] == sorted(int(r[3]) for r in table.rows)


def test_scaling_mismatch_warning(tmp_path: Path) -> None:
    path = tmp_path / "mismatch"
    audit = write_audit_dir(path, image=False, seed=2, attacks={"loss": 0.0, "confidence": 0.0},
                            member_accuracy=0.1, nonmember_accuracy=0.1, n=120)  # fmt: skip
    assert not audit["verdict"]["leaks"]
    built = build_report(path)
    for text in (_text(built["html"]), _text(built["md"])):
        assert "Check that the data is preprocessed as the model expects (a scaling mismatch shows here)" in text
        assert NO_LEAK in text and "is not a proof of privacy" in text


def test_accuracy_warning_rules(image_audit: tuple[Path, dict[str, Any]]) -> None:
    target = load_audit(image_audit[0]).target
    assert accuracy_warning(target, 10) == ""
    low = target.__class__(**{**target.__dict__, "member_accuracy": 0.6, "nonmember_accuracy": 0.85})
    assert accuracy_warning(low, 10).startswith("The model is less accurate on its own training members (0.600)")
    chance = target.__class__(**{**target.__dict__, "member_accuracy": 0.55, "nonmember_accuracy": 0.52})
    assert "near chance" in accuracy_warning(chance, 2) and accuracy_warning(chance, 10) == ""


@pytest.mark.parametrize(("answers", "named"), [("top_k", "ml-leaks"), ("rounded", "lira"), ("labels", "label-only")])
def test_output_defence_is_named(tmp_path: Path, answers: str, named: str) -> None:
    path = tmp_path / answers
    write_audit_dir(path, image=False, seed=3, answers=answers, n=60)
    html = _text(build_report(path, formats=("html",))["html"])
    assert "A deliberate output defence: " in html and named in html and f"answering {answers}" in html


def test_image_shapes_with_channels() -> None:
    x = np.arange(64, dtype=np.float32)
    assert _as_image(x, (8, 8)).shape == (8, 8) and _as_image(x, (1, 8, 8)).shape == (8, 8)
    rgb = np.arange(3 * 16, dtype=np.float32)
    first, last = _as_image(rgb, (3, 4, 4)), _as_image(rgb, (4, 4, 3))
    assert first.shape == last.shape == (4, 4, 3) and first.min() == 0 and first.max() == 1
    np.testing.assert_allclose(first[..., 0], rgb[:16].reshape(4, 4) / 47)


def test_write_audit_report(image_audit: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    written = write_audit_report(image_audit[0], formats=("md",), out=tmp_path / "r")
    assert set(written) == {"md"} and (tmp_path / "r" / "figures" / "most_exposed_records.png").read_bytes()[:8] == PNG


# --------------------------------------------------------------------------- errors, incomplete
def test_missing_audit_json(tmp_path: Path) -> None:
    with pytest.raises(
        ReportError, match=r"audit.json is missing in .*: this is not an audit directory; run `miaudit audit"
    ):
        load_audit(tmp_path)
    with pytest.raises(
        ReportError, match=r"manifest.json is missing .*for an audit, pass the folder written by `miaudit audit"
    ):
        build_report(tmp_path)


def test_bad_json(damaged: Path) -> None:
    (damaged / "audit.json").write_text('{"format": 1, "kind": "audit",')
    with pytest.raises(ReportError, match=r"audit.json is not valid JSON \(.*\): rerun the audit command"):
        build_report(damaged)


def test_unknown_format(damaged: Path) -> None:
    _edit_json(damaged, format=2)
    with pytest.raises(ReportError, match=r"has format 2; this miaudit reads format 1: upgrade miaudit"):
        load_audit(damaged)


def test_missing_column_in_records_csv(damaged: Path) -> None:
    (damaged / "records.parquet").unlink()
    rows = list(csv.DictReader((damaged / "records.csv").open()))
    with (damaged / "records.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in RECORD_COLUMNS if c != "score"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ReportError, match=r"records.csv in .* lacks the column\(s\) 'score' \(found: id, label"):
        build_report(damaged)


def test_bad_cell_in_records_csv(damaged: Path) -> None:
    (damaged / "records.parquet").unlink()
    text = (damaged / "records.csv").read_text().replace(",true,", ",maybe,", 1)
    (damaged / "records.csv").write_text(text)
    with pytest.raises(ReportError, match=r"records.csv in .*, column 'member', row \d+: 'maybe' is not true or false"):
        load_audit(damaged)


def test_missing_column_in_parquet(damaged: Path) -> None:
    (damaged / "records.csv").unlink()
    table = pq.read_table(damaged / "records.parquet").drop_columns(["rank"])
    pq.write_table(table, damaged / "records.parquet")
    with pytest.raises(ReportError, match=r"records.parquet in .* lacks the column\(s\) 'rank'"):
        load_audit(damaged)


def test_complete_audit_without_records(damaged: Path) -> None:
    (damaged / "records.csv").unlink()
    (damaged / "records.parquet").unlink()
    with pytest.raises(ReportError, match=r"records.csv and records.parquet are both missing in .*rerun the audit"):
        load_audit(damaged)


def test_exposed_npz_is_never_unpickled(damaged: Path) -> None:
    np.savez(damaged / "exposed.npz", ids_lira=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ReportError, match=r"exposed.npz is not a readable .npz file of plain arrays"):
        load_audit(damaged)


@pytest.mark.parametrize(("status", "state"), [("interrupted", "was interrupted"), ("running", "is still running")])
def test_unfinished_audit_without_attacks(damaged: Path, status: str, state: str) -> None:
    _edit_json(damaged, status=status, attacks={}, verdict=None, error="out of memory")
    with pytest.raises(ReportError, match=rf"the audit in .* {state} \(out of memory\) before any attack finished"):
        build_report(damaged)


def test_interrupted_audit_is_drawn_with_a_warning(damaged: Path) -> None:
    raw = json.loads((damaged / "audit.json").read_text())
    _edit_json(damaged, status="interrupted", error="the prediction service stopped answering", verdict=None,
               attacks={"lira": raw["attacks"]["lira"]})  # fmt: skip
    (damaged / "records.csv").unlink()
    (damaged / "records.parquet").unlink()
    built = build_report(damaged)
    for text in (_text(built["html"]), _text(built["md"])):
        assert "Warning: this audit was interrupted (status " in text
        assert "the prediction service stopped answering" in text and "No verdict yet" in text
        assert "No per-record scores were stored" in text
    doc, _ = build_document(damaged)
    assert [r[0] for r in _table(doc, "The attacks, strongest first").rows] == ["lira"]
    assert {f.name for f in doc.figures()} == {"most_exposed_records"}  # from exposed.npz alone


# ------------------------------------------------------------------------ run directories still work
def test_run_directories_still_build(attack_run: Path, tmp_path: Path) -> None:
    built = build_report(attack_run, out=tmp_path / "run-report")
    html = _text(built["html"])
    assert "Membership inference audit: " in html and "The attacks, strongest first" not in html
    doc, out = build_document(attack_run)
    assert out == attack_run and "the-attacks" not in {s.anchor for s in doc.sections}
    assert {f.name for f in doc.figures()} == {"roc_linear", "roc_loglog", "score_histogram"}


def test_doctests() -> None:
    import doctest

    import miaudit.report.audit_report as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
