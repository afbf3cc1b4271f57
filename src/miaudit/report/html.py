"""Render a :class:`~.document.Document` as one self-contained HTML file.

Figures are embedded as ``data:image/png;base64`` URIs and the style sheet is inline, so the file
opens anywhere without network access; there is no JavaScript. A Content-Security-Policy meta tag
forbids every external load, so a mistake would show as a blocked request, never a silent fetch.
All text is escaped.
"""

from __future__ import annotations

import base64
import struct
from html import escape

from miaudit.report.document import (
    Block,
    Bullets,
    Document,
    FigureBlock,
    Inline,
    Paragraph,
    Preformatted,
    Section,
    Strong,
    Table,
)

__all__ = ["png_size", "render_html"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
:root { --ink: #1d232a; --muted: #5b6470; --rule: #d9dee4; --band: #f5f7f9; --accent: #0b5394; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0 auto; max-width: 1060px; padding: 1.5rem 1.5rem 4rem; color: var(--ink); background: #fff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  line-height: 1.5; }
h1 { font-size: 1.75rem; margin: 0 0 .25rem; line-height: 1.25; }
h2 { font-size: 1.35rem; margin: 2.4rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--rule); }
h3 { font-size: 1.1rem; margin: 1.8rem 0 .5rem; }
p, li { max-width: 52rem; }
a { color: var(--accent); }
.subtitle { color: var(--muted); margin: 0 0 1rem; }
nav.toc { background: var(--band); border: 1px solid var(--rule); border-radius: 6px; padding: .5rem 1.2rem;
  margin: 1rem 0 1.5rem; }
nav.toc h2 { font-size: 1rem; border: 0; margin: .4rem 0; padding: 0; }
nav.toc ol { margin: .2rem 0 .5rem; padding-left: 1.3rem; }
nav.toc li { margin: .1rem 0; }
section.summary { border-left: 4px solid var(--accent); background: #f3f7fb; padding: .2rem 1.2rem .8rem;
  border-radius: 0 6px 6px 0; }
section.summary h2 { border: 0; margin-top: .8rem; }
.table-wrap { overflow-x: auto; margin: 1rem 0 .3rem; }
table { border-collapse: collapse; font-size: .88rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 .4rem; }
th, td { border-bottom: 1px solid var(--rule); padding: .3rem .6rem; vertical-align: top; }
thead th, thead td { background: var(--band); border-bottom: 2px solid #b9c1ca; text-align: left; }
thead th.group { text-align: center; border-bottom: 1px solid #b9c1ca; border-left: 2px solid #fff; }
tbody th { font-weight: 600; text-align: left; }
td.r, th.r { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
.note { color: var(--muted); font-size: .85rem; margin: .2rem 0 1.2rem; }
figure { margin: 1.4rem 0; }
figure.half { display: inline-block; vertical-align: top; width: 48%; margin-right: 1.5%; }
@media (max-width: 800px) { figure.half { display: block; width: auto; margin-right: 0; } }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 4px; }
figcaption { font-size: .9rem; color: var(--muted); max-width: 52rem; margin-top: .3rem; }
figcaption b { color: var(--ink); }
pre { background: var(--band); border: 1px solid var(--rule); border-radius: 4px; padding: .7rem; font-size: .8rem;
  overflow-x: auto; max-height: 32rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600;
  white-space: nowrap; border: 1px solid transparent; }
.v-supported { background: #e3f4e8; color: #11642c; border-color: #9fd3ae; }
.v-not-supported { background: #fdf3dc; color: #7a5300; border-color: #ecd08b; }
.v-contradicted { background: #fde6e4; color: #9d1c12; border-color: #f0aaa3; }
.v-inconclusive { background: #eceff2; color: #48515b; border-color: #c9d0d7; }
.v-negligible { background: #e6f0fa; color: #1f4e79; border-color: #a9c7e6; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--rule);
  padding-top: .6rem; }
@media print { body { max-width: none; padding: 0; } nav.toc { display: none; } figure, table { break-inside: avoid; }
  pre { max-height: none; } }
"""


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels from a PNG's IHDR chunk; ``(0, 0)`` if it is not a PNG."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return 0, 0
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


class _Counter:
    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0


def _inline(parts: tuple[Inline, ...]) -> str:
    return "".join(f"<strong>{escape(p.text)}</strong>" if isinstance(p, Strong) else escape(p) for p in parts)


def _table(t: Table, n: int) -> str:
    align = t.alignment()
    head = "".join(f'<th scope="col" class="{a}">{escape(c)}</th>' for c, a in zip(t.columns, align, strict=True))
    if t.groups:
        top = "".join(
            f'<th scope="colgroup" colspan="{span}" class="group">{escape(g)}</th>' if g else "<td></td>"
            for g, span in t.groups
        )
        head = f"{top}</tr><tr>{head}"
    body = []
    for row in t.rows:
        cells = []
        for i, (text, a) in enumerate(zip(row, align, strict=True)):
            content = escape(text)
            if i in t.badge_columns and text != "–":
                content = f'<span class="badge v-{escape(text.replace(" ", "-"))}">{content}</span>'
            tag = 'th scope="row"' if i == 0 else "td"
            cells.append(f'<{tag} class="{a}">{content}</{tag.split()[0]}>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = f'<p class="note">{escape(t.caption)}</p>' if t.caption else ""
    return (
        f'<div class="table-wrap"><table><caption>Table {n}. {escape(t.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _figure(f: FigureBlock, n: int) -> str:
    width, height = png_size(f.png)
    data = base64.b64encode(f.png).decode("ascii")
    size = f' width="{width}" height="{height}"' if width else ""
    caption = f"<b>Figure {n}. {escape(f.title)}.</b> {escape(f.caption)}"
    cls = ' class="half"' if f.half else ""
    return (
        f'<figure id="fig-{escape(f.name)}"{cls}><img src="data:image/png;base64,{data}" '
        f'alt="{escape(f.alt or f.title)}"{size}><figcaption>{caption}</figcaption></figure>'
    )


def _block(b: Block, counter: _Counter) -> str:
    if isinstance(b, Paragraph):
        return f"<p>{_inline(b.parts)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, Preformatted):
        return f"<pre>{escape(b.text)}</pre>"
    if isinstance(b, Table):
        counter.tables += 1
        return _table(b, counter.tables)
    if isinstance(b, FigureBlock):
        counter.figures += 1
        return _figure(b, counter.figures)
    raise TypeError(f"cannot render a {type(b).__name__} block as HTML")


def _section(s: Section, counter: _Counter, level: int) -> str:
    parts = [f'<section id="{escape(s.anchor)}"><h{level}>{escape(s.title)}</h{level}>']
    parts += [_block(b, counter) for b in s.blocks]
    parts += [_section(sub, counter, min(level + 1, 6)) for sub in s.subsections]
    parts.append("</section>")
    return "\n".join(parts)


def _toc(doc: Document) -> str:
    items = ['<li><a href="#executive-summary">Executive summary</a></li>']
    for s in doc.sections:
        subs = "".join(f'<li><a href="#{escape(x.anchor)}">{escape(x.title)}</a></li>' for x in s.subsections)
        items.append(
            f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a>' + (f"<ol>{subs}</ol>" if subs else "") + "</li>"
        )
    return f'<nav class="toc" aria-label="contents"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def render_html(doc: Document, *, footer: str = "") -> str:
    """The whole report as one HTML page (UTF-8 text), with no external references."""
    counter = _Counter()
    summary = "\n".join(_block(b, counter) for b in doc.summary)
    sections = "\n".join(_section(s, counter, 2) for s in doc.sections)
    foot = f"<footer>{escape(footer)}</footer>" if footer else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="generator" content="miaudit report">
<title>{escape(doc.title)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<header><h1>{escape(doc.title)}</h1><p class="subtitle">{escape(doc.subtitle)}</p></header>
{_toc(doc)}
<section id="executive-summary" class="summary"><h2>Executive summary</h2>
{summary}
</section>
{sections}
{foot}
</body>
</html>
"""
