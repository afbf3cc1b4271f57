"""``build_report``: stored results in, ``report.html`` and ``report.md`` (with ``figures/``) out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from miaudit._io import atomic_write_text
from miaudit.errors import ConfigError
from miaudit.report.audit_load import AUDIT_FILE, load_audit
from miaudit.report.audit_report import audit_document
from miaudit.report.document import Document
from miaudit.report.figures import save_png
from miaudit.report.html import render_html
from miaudit.report.load import load_run
from miaudit.report.markdown import render_markdown
from miaudit.report.records import ReportError
from miaudit.report.run_report import run_document

__all__ = ["FORMATS", "build_document", "build_report", "is_audit_dir", "write_audit_report", "write_report"]

logger = logging.getLogger(__name__)

FORMATS = ("html", "md")
_ALIASES = {"both": FORMATS, "html": ("html",), "md": ("md",), "markdown": ("md",)}
_FILE_SUFFIXES = (".html", ".htm", ".md")


def _check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    out: list[str] = []
    for f in formats:
        if f not in _ALIASES:
            raise ConfigError(f"unknown report format {f!r}; allowed: 'html', 'md' or 'both'")
        out += [x for x in _ALIASES[f] if x not in out]
    if not out:
        raise ConfigError("formats is empty; pass 'html', 'md' or both")
    return tuple(out)


def is_audit_dir(path: Path | str) -> bool:
    """Whether ``path`` is an audit directory (a folder holding ``audit.json``) or that ``audit.json`` itself."""
    path = Path(path)
    return (path.name == AUDIT_FILE and path.is_file()) or (path / AUDIT_FILE).is_file()


def build_document(source: Path | str) -> tuple[Document, Path]:
    """Load a run or audit directory and compose its report.

    A folder holding ``audit.json`` (or that file itself) is an audit directory
    (``docs/audit-format.md``); any other folder is read as a run directory (``docs/run-format.md``).
    Returns the document and the default output folder, the directory itself. Any other ``.json``
    file is refused (a :class:`ReportError` saying to pass a run directory).
    """
    path = Path(source)
    if is_audit_dir(path):
        audit = load_audit(path)
        return audit_document(audit), audit.path
    try:
        run = load_run(path)
    except ReportError as exc:
        if path.is_dir() and not (path / "manifest.json").exists():
            raise ReportError(
                f"{exc}; for an audit, pass the folder written by `miaudit audit ... --out DIR` (it holds {AUDIT_FILE})"
            ) from None
        raise
    return run_document(run), path


def write_report(doc: Document, out: Path, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Write ``doc`` as ``report.html`` and/or ``report.md`` (figures in ``figures/`` beside it).

    ``out`` is a folder; or a file name ending in ``.html``/``.md``, whose stem then names both
    files (figures go to ``<stem>-figures/``). Stale PNGs in the figures folder are removed.
    """
    fmts = _check_formats(formats)
    out = Path(out)
    if out.suffix.lower() in _FILE_SUFFIXES:
        folder, stem, fig_dir_name = out.parent, out.stem, f"{out.stem}-figures"
    else:
        folder, stem, fig_dir_name = out, "report", "figures"
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"cannot write the report into {folder}: it is a file; pass a folder with --out")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"Written by miaudit report on {stamp} from stored results; nothing was retrained or recomputed."
    written: dict[str, Path] = {}
    if "html" in fmts:
        written["html"] = atomic_write_text(folder / f"{stem}.html", render_html(doc, footer=footer))
    if "md" in fmts:
        fig_dir = folder / fig_dir_name
        names = set()
        for fig in doc.figures():
            save_png(fig.png, fig_dir / f"{fig.name}.png")
            names.add(f"{fig.name}.png")
        if fig_dir.is_dir():
            for stale in fig_dir.glob("*.png"):
                if stale.name not in names:
                    stale.unlink()
        md = render_markdown(doc, figures_dir=fig_dir_name, footer=footer)
        written["md"] = atomic_write_text(folder / f"{stem}.md", md)
    for kind, path in written.items():
        logger.info("wrote the %s report to %s", kind, path)
    return written


def build_report(
    run_dir: Path | str, *, formats: Sequence[str] = FORMATS, out: Path | str | None = None
) -> dict[str, Path]:
    """Build the report of stored results and return ``{"html": path, "md": path}`` (those requested).

    Parameters
    ----------
    run_dir : path
        A run directory, written by ``miaudit reproduce``, ``miaudit compare --out DIR`` or
        ``miaudit attack --out DIR`` (``docs/run-format.md``); or an audit directory, written by
        ``miaudit audit --out DIR`` (``docs/audit-format.md``).
    formats : sequence of {"html", "md", "both"}, default=("html", "md")
        ``html``: one self-contained file, figures embedded. ``md``: Markdown with PNGs beside it.
    out : path, optional
        Output folder (default: the run directory), or a file name ending in ``.html``/``.md``.

    Raises
    ------
    ReportError
        The input is missing, partial or malformed, or a JSON file rather than a run directory;
        the message names what and the fix.
    ConfigError
        An unknown format.
    """
    fmts = _check_formats(formats)
    doc, default_out = build_document(run_dir)
    return write_report(doc, Path(out) if out is not None else default_out, fmts)


def write_audit_report(
    audit_dir: Path | str, *, formats: Sequence[str] = FORMATS, out: Path | str | None = None
) -> dict[str, Path]:
    """Write the report of an audit directory and return ``{"html": path, "md": path}`` (those requested).

    Parameters
    ----------
    audit_dir : path
        The folder written by ``miaudit audit --out DIR`` (``docs/audit-format.md``).
    formats : sequence of {"html", "md", "both"}, default=("html", "md")
        ``html``: one self-contained file, figures embedded. ``md``: Markdown with PNGs in ``figures/``.
    out : path, optional
        Output folder (default: the audit directory), or a file name ending in ``.html``/``.md``.

    Raises
    ------
    ReportError
        ``audit.json`` is missing or malformed, a records column is missing, or the audit is running or
        was interrupted before any attack finished; the message names the file and the fix.
    ConfigError
        An unknown format.
    """
    fmts = _check_formats(formats)
    audit = load_audit(audit_dir)
    return write_report(audit_document(audit), Path(out) if out is not None else audit.path, fmts)
