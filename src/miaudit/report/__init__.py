"""Reports people read: tables and figures from stored results, as HTML and Markdown.

``build_report(run_dir)`` reads a ``miaudit reproduce`` run directory (or an ``attack --json`` /
``compare --json`` record) and writes ``report.html`` (self-contained) and ``report.md`` with
``figures/*.png``. This package reads stored results only: it never imports models, training or
attacks, and never reruns anything.

Modules: ``records`` (the data and ``ReportError``); ``load`` and ``load_records`` (strict readers
of run directories and of JSON records); ``labels`` (names and number formats); ``tables``;
``figures`` and ``curves`` (compute, plot, render); ``document`` (the document tree); ``html`` and
``markdown`` (renderers); ``run_report`` and ``record_report`` (what each report says); ``build``
(the entry point).
"""

from __future__ import annotations

from miaudit.report.build import FORMATS, build_document, build_report, write_report
from miaudit.report.load import RunData, load_run
from miaudit.report.load_records import load_attack_record, load_compare
from miaudit.report.records import AttackRecord, CompareData, ReportError

__all__ = [
    "FORMATS",
    "AttackRecord",
    "CompareData",
    "ReportError",
    "RunData",
    "build_document",
    "build_report",
    "load_attack_record",
    "load_compare",
    "load_run",
    "write_report",
]
