"""Reports people read: tables and figures from stored results, as HTML and Markdown.

``build_report(run_dir)`` reads a run directory (written by ``miaudit reproduce``, ``miaudit
compare --out DIR`` or ``miaudit attack --out DIR``; see ``docs/run-format.md``) and writes
``report.html`` (self-contained) and ``report.md`` with ``figures/*.png``; given an audit directory
(``miaudit audit --out DIR``, ``docs/audit-format.md``) it writes the audit report, as
``write_audit_report(audit_dir)`` does. This package reads
stored results only: it never imports models, training or attacks, and never reruns anything.

Modules: ``records`` (the typed records and ``ReportError``); ``load`` (the one reader of a run
directory); ``labels`` (names and number formats); ``tables``; ``figures`` and ``curves`` (compute,
plot, render); ``document`` (the document tree); ``html`` and ``markdown`` (renderers);
``run_report`` and ``study_sections`` (the one composer: what a report says); ``setting_info`` (the
reader of ``settings.json``), ``arms``, ``frontier`` and ``frontier_figures`` (studies of defences:
the privacy-utility frontier and policies at the API); ``audit_load`` and
``audit_report`` (the reader and composer of an audit directory); ``build`` (the entry point).
"""

from __future__ import annotations

from miaudit.report.audit_load import AuditData, load_audit
from miaudit.report.audit_report import audit_document
from miaudit.report.build import FORMATS, build_document, build_report, write_audit_report, write_report
from miaudit.report.load import RunData, load_run
from miaudit.report.records import Finding, Interval, Manifest, ReportError, ResultRow, ScoreSet, StudyInfo, SummaryRow

__all__ = [
    "FORMATS",
    "AuditData",
    "Finding",
    "Interval",
    "Manifest",
    "ReportError",
    "ResultRow",
    "RunData",
    "ScoreSet",
    "StudyInfo",
    "SummaryRow",
    "audit_document",
    "build_document",
    "build_report",
    "load_audit",
    "load_run",
    "write_audit_report",
    "write_report",
]
