"""build_report end to end: files, figures, self-contained HTML, Markdown links, every kind of run directory."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from miaudit.report import build_report, load_run

FIGURES = {  # of the seed paper's six studies, none of which varies the attack
    "best_roc_linear",
    "best_roc_loglog",
    "best_score_histogram",
    "gap_vs_auc",
    "study1_attack_model_x_number_of_shadow_models",
    "study2_number_of_shadow_models",
    "study3_target_training_size",
    "study4_number_of_classes",
    "study5_overfitting_dense_network_vs_dropout",
    "study6_mismatched_shadow_architecture",
}


def assert_png(data: bytes, what: str) -> tuple[int, int]:
    """A valid PNG of a sensible size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{what} is not a PNG"
    with Image.open(BytesIO(data)) as img:
        img.verify()
    with Image.open(BytesIO(data)) as img:
        img.load()
        assert img.format == "PNG" and img.width >= 300 and img.height >= 200, (what, img.size)
        return img.size


class _Refs(HTMLParser):
    """Every URL-bearing attribute, every tag name and the text of <style> elements."""

    URL_ATTRS = frozenset({"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "cite"})

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.styles: list[str] = []
        self.ids: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name == "id":
                self.ids.append(value or "")
            if name in self.URL_ATTRS:
                self.urls.append((tag, name, value or ""))
            if name == "style":
                self.styles.append(value or "")
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def parse(html: str) -> _Refs:
    p = _Refs()
    p.feed(html)
    return p


def assert_self_contained(html: str) -> _Refs:
    """No external reference of any kind: only data: URIs and in-page anchors, no script, no @import."""
    refs = parse(html)
    for tag, attr, url in refs.urls:
        assert url.startswith(("data:", "#")), f"<{tag} {attr}={url[:60]!r}> points outside the file"
        assert not re.match(r"\s*(https?:)?//", url)
    css = "\n".join(refs.styles)
    assert "@import" not in css
    assert all(u.startswith("data:") for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)", css))
    assert "script" not in refs.tags and "iframe" not in refs.tags and "object" not in refs.tags
    assert refs.tags.count("link") <= 1  # only the empty data: icon, which stops a favicon request
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert len(refs.ids) == len(set(refs.ids)), "duplicate element ids"
    anchors = {url[1:] for _, _, url in refs.urls if url.startswith("#")}
    assert anchors <= set(refs.ids), f"links to missing anchors: {anchors - set(refs.ids)}"
    return refs


# ---------------------------------------------------------------------------------------- full run
def test_report_of_a_stored_run_has_every_figure(built: dict[str, Path], run_dir: Path) -> None:
    assert set(built) == {"html", "md"}
    assert built["html"] == run_dir / "report.html" and built["md"] == run_dir / "report.md"
    pngs = {p.stem: p for p in (run_dir / "figures").glob("*.png")}
    assert set(pngs) == FIGURES
    for name, path in pngs.items():
        assert_png(path.read_bytes(), name)


def test_html_is_self_contained_and_embeds_every_figure(built: dict[str, Path], run_dir: Path) -> None:
    html = built["html"].read_text(encoding="utf-8")
    refs = assert_self_contained(html)
    assert len(refs.images) == len(FIGURES)
    files = {p.read_bytes() for p in (run_dir / "figures").glob("*.png")}
    for img in refs.images:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        width, height = assert_png(data, img.get("alt") or "?")
        assert (img["width"], img["height"]) == (str(width), str(height))
        assert img.get("alt")
        assert data in files  # the Markdown copy is the same picture


def test_html_tells_the_story(built: dict[str, Path], run_dir: Path) -> None:
    html = built["html"].read_text(encoding="utf-8")
    summary = html[html.index('id="executive-summary"') : html.index('id="the-strongest-attack"')]
    assert "Strongest attack" in summary and "ROC AUC" in summary and "TPR at 0.1% FPR" in summary
    assert re.search(r"95% CI \[0\.\d{3}, 0\.\d{3}\], 3 seeds", summary)
    verdicts = Counter(f["verdict"] for f in json.loads((run_dir / "findings.json").read_text()))
    order = ("supported", "contradicted", "negligible", "inconclusive")
    assert ", ".join(f"{verdicts[v]} {v}" for v in order if verdicts[v]) in summary
    for study in ("1", "2", "3", "4", "5", "6"):
        assert f'id="study-{study}-' in html
    for paper_value in ("0.6962", "0.6237", "0.9892", "0.5054", "0.5967"):  # Tables 1-4
        assert paper_value in html
    assert 'colspan="2" class="group">Linear SVM</th>' in html and ">paper</th>" in html
    assert "verdict on AUC" in html and ">margin</th>" in html and ">seeds needed</th>" in html
    for verdict in verdicts:
        assert f'<span class="badge v-{verdict}">{verdict}</span>' in html
    assert ".v-negligible {" in html
    for appendix in ("Versions", "Hardware", "Timings", "torch", "Synthetic CPU", "41 min 07 s", "rbf_max_samples"):
        assert appendix in html
    assert "attacks compared" not in html.lower()  # no study varies the attack


def test_text_is_escaped(built: dict[str, Path]) -> None:
    html = built["html"].read_text(encoding="utf-8")
    md = built["md"].read_text(encoding="utf-8")
    assert "<em>lower</em>" not in html and "&lt;em&gt;lower&lt;/em&gt;" in html
    assert "\\<em\\>lower\\</em\\>" in md


def test_markdown_links_every_figure_relatively(built: dict[str, Path], run_dir: Path) -> None:
    md = built["md"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/{name}.png" for name in FIGURES)
    assert all((run_dir / link).is_file() for link in links)
    assert "http" not in "".join(links)
    assert re.search(r"^\| shadows \| Logistic regression \(ours\) \| Logistic regression \(paper\) \|", md, re.M)
    assert "| 6 | " in md and "0.6962" in md


# ------------------------------------------------------------------------------------ other runs
def test_html_only_writes_no_figure_files(attack_run: Path, tmp_path: Path) -> None:
    out = build_report(attack_run, formats=("html",), out=tmp_path / "html-only")
    assert set(out) == {"html"} and out["html"].is_file()
    assert not (tmp_path / "html-only" / "figures").exists() and not (tmp_path / "html-only" / "report.md").exists()


def test_out_as_a_file_name(attack_run: Path, tmp_path: Path) -> None:
    out = build_report(attack_run, formats="both", out=tmp_path / "paper" / "audit.md")
    assert out == {"html": tmp_path / "paper" / "audit.html", "md": tmp_path / "paper" / "audit.md"}
    md = out["md"].read_text(encoding="utf-8")
    assert "](audit-figures/roc_loglog.png)" in md
    assert len(list((tmp_path / "paper" / "audit-figures").glob("*.png"))) == 3


def test_report_of_a_quick_single_seed_run(make_paper_run, tmp_path: Path) -> None:
    run = make_paper_run(tmp_path / "quick", seeds=(0,), quick=True, n=120)
    (run / "figures").mkdir()
    (run / "figures" / "stale.png").write_bytes(b"old")
    out = build_report(run)
    html = out["html"].read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "1 seed, no interval" in html and "inconclusive" in html
    assert not (run / "figures" / "stale.png").exists()
    for path in (run / "figures").glob("*.png"):
        assert_png(path.read_bytes(), path.name)


def test_report_of_some_studies_only(make_paper_run, tmp_path: Path) -> None:
    run = make_paper_run(tmp_path / "two", seeds=(0, 1), studies=("2", "5"), n=100)
    out = build_report(run, formats=("md",))
    md = out["md"].read_text(encoding="utf-8")
    assert "## Study 2: Number of shadow models" in md and "## Study 5:" in md and "## Study 1" not in md
    names = {p.stem for p in (run / "figures").glob("*.png")}
    assert names == {
        "best_roc_linear",
        "best_roc_loglog",
        "best_score_histogram",
        "gap_vs_auc",
        "study2_number_of_shadow_models",
        "study5_overfitting_dense_network_vs_dropout",
    }


def test_rendering_imports_no_models_training_or_attacks(attack_run: Path, tmp_path: Path) -> None:
    """The report reads stored results; it must not even import what trains or attacks.

    The one piece of the experiment layer it shares is the record types of the result files
    (``miaudit.studies.records``, which imports nothing of the package).
    """
    code = (
        "import sys; from miaudit.report import build_report; "
        f"build_report({str(attack_run)!r}, out={str(tmp_path / 'out')!r}); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn') "
        "or m.startswith(('miaudit.attacks', 'miaudit.training', 'miaudit.targets', 'miaudit.studies.', "
        "'matplotlib.pyplot')) and m != 'miaudit.studies.records'); print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "report.html").is_file()


def test_figures_are_reproducible(compare_run: Path, tmp_path: Path) -> None:
    a = build_report(compare_run, formats=("md",), out=tmp_path / "a")
    b = build_report(compare_run, formats=("md",), out=tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a" / "figures").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "b" / "figures").glob("*.png")) and len(names) == 4
    for name in names:
        assert (tmp_path / "a" / "figures" / name).read_bytes() == (tmp_path / "b" / "figures" / name).read_bytes()
    strip = lambda p: re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", p.read_text())  # noqa: E731
    assert strip(a["md"]) == strip(b["md"])


@pytest.mark.parametrize("module", ["document", "markdown", "labels"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"miaudit.report.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_report_of_a_real_tiny_reproduce_run(tmp_path: Path) -> None:
    """The producer and the report together: `miaudit reproduce` (tiny digits studies) writes its report."""
    configs = Path(__file__).resolve().parents[1] / "studies" / "configs_tiny"
    if not configs.is_dir():
        pytest.skip(f"the tiny study configs are not there ({configs})")
    run = tmp_path / "tiny"
    cmd = [sys.executable, "-m", "miaudit.cli", "reproduce", "--config-dir", str(configs), "--seeds", "2",
           "--out", str(run)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "html report written to" in proc.stdout and "md report written to" in proc.stdout
    html = (run / "report.html").read_text(encoding="utf-8")
    refs = assert_self_contained(html)
    names = {p.name for p in (run / "figures").glob("*.png")}
    assert len(refs.images) == len(names) >= 5
    gaps = {round(r.mean, 9) for r in load_run(run).summary if r.metric == "generalization_gap"}
    assert ("gap_vs_auc.png" in names) == (len(gaps) > 1)  # the overfitting view needs targets that differ
    for path in (run / "figures").glob("*.png"):
        assert_png(path.read_bytes(), path.name)
    assert "Study 1: Attack model x number of shadow models (tiny)" in html and "Study 2:" in html
    assert "scikit-learn digits" in html
