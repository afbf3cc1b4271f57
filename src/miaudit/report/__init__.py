"""Reports people read: tables and figures from stored results, as HTML and Markdown.

``build_report(run_dir)`` reads a run directory (written by ``miaudit reproduce``, ``miaudit
compare --out DIR`` or ``miaudit attack --out DIR``; see ``docs/run-format.md``) and writes
``report.html`` (self-contained) and ``report.md`` with ``figures/*.png``. This package reads
stored results only: it never imports models, training or attacks, and never reruns anything.

Modules: ``records`` (the typed records and ``ReportError``); ``load`` (the one reader of a run
directory); ``labels`` (names and number formats); ``tables``; ``figures`` and ``curves`` (compute,
plot, render); ``document`` (the document tree); ``html`` and ``markdown`` (renderers);
``run_report`` and ``study_sections`` (the one composer: what a report says); ``build`` (the entry
point).
"""

from __future__ import annotations

from miaudit.report.build import FORMATS, build_document, build_report, write_report
from miaudit.report.load import RunData, load_run
from miaudit.report.records import Finding, Interval, Manifest, ReportError, ResultRow, ScoreSet, StudyInfo, SummaryRow

__all__ = [
    "FORMATS",
    "Finding",
    "Interval",
    "Manifest",
    "ReportError",
    "ResultRow",
    "RunData",
    "ScoreSet",
    "StudyInfo",
    "SummaryRow",
    "build_document",
    "build_report",
    "load_run",
    "write_report",
]
