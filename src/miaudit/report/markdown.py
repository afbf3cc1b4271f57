"""Render a :class:`~.document.Document` as GitHub-flavoured Markdown, figures as PNG files beside it.

The figures are linked relatively (``figures/<name>.png``), so the folder can be copied, committed
to a wiki or pasted into a paper's supplement as is. Text is escaped so that no cell breaks a table.
"""

from __future__ import annotations

import re

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

__all__ = ["md_escape", "render_markdown"]

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_escape(text: str) -> str:
    """Escape Markdown's special characters and fold newlines, so text renders literally.

    >>> md_escape("a|b *c* <d>")
    'a\\\\|b \\\\*c\\\\* \\\\<d\\\\>'
    """
    return _SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", text))


def _inline(parts: tuple[Inline, ...]) -> str:
    return "".join(f"**{md_escape(p.text)}**" if isinstance(p, Strong) else md_escape(p) for p in parts)


def _table(t: Table, n: int) -> str:
    sep = {"l": ":---", "r": "---:"}
    lines = [f"**Table {n}. {md_escape(t.title)}**", ""]
    lines.append("| " + " | ".join(md_escape(c) for c in t.flat_columns()) + " |")
    lines.append("|" + "|".join(sep.get(a, "---") for a in t.alignment()) + "|")
    lines += ["| " + " | ".join(md_escape(c) or " " for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"*{md_escape(t.caption)}*"]
    return "\n".join(lines)


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _block(b: Block, counter: list[int], figures_dir: str) -> str:
    if isinstance(b, Paragraph):
        return _inline(b.parts)
    if isinstance(b, Bullets):
        return "\n".join(f"- {_inline(item)}" for item in b.items)
    if isinstance(b, Preformatted):
        return _fence(b.text)
    if isinstance(b, Table):
        counter[1] += 1
        return _table(b, counter[1])
    if isinstance(b, FigureBlock):
        counter[0] += 1
        alt = md_escape(b.alt or b.title)
        return (
            f"![{alt}]({figures_dir}/{b.name}.png)\n\n"
            f"*Figure {counter[0]}. {md_escape(b.title)}.* {md_escape(b.caption)}"
        )
    raise TypeError(f"cannot render a {type(b).__name__} block as Markdown")


def _section(s: Section, counter: list[int], level: int, figures_dir: str) -> str:
    parts = [f"{'#' * level} {md_escape(s.title)}"]
    parts += [_block(b, counter, figures_dir) for b in s.blocks]
    parts += [_section(sub, counter, min(level + 1, 6), figures_dir) for sub in s.subsections]
    return "\n\n".join(parts)


def render_markdown(doc: Document, *, figures_dir: str = "figures", footer: str = "") -> str:
    """The whole report as Markdown; figure ``name`` is linked as ``<figures_dir>/<name>.png``."""
    counter = [0, 0]  # figures, tables
    toc = ["- [Executive summary](#executive-summary)"]
    for s in doc.sections:
        toc.append(f"- [{md_escape(s.title)}](#{s.anchor})")
        toc += [f"  - [{md_escape(x.title)}](#{x.anchor})" for x in s.subsections]
    parts = [f"# {md_escape(doc.title)}", f"*{md_escape(doc.subtitle)}*", "\n".join(toc), "## Executive summary"]
    parts += [_block(b, counter, figures_dir) for b in doc.summary]
    parts += [_section(s, counter, 2, figures_dir) for s in doc.sections]
    if footer:
        parts += ["---", f"*{md_escape(footer)}*"]
    return "\n\n".join(parts) + "\n"
