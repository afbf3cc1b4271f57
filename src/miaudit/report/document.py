"""The report as a small document tree, rendered to HTML by :mod:`.html` and Markdown by :mod:`.markdown`.

Builders (:mod:`.build`) decide what a report says; renderers decide how it looks. Text is plain
(renderers escape it); emphasis is a :class:`Strong` span inside a :class:`Paragraph`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Block",
    "Bullets",
    "Document",
    "FigureBlock",
    "Paragraph",
    "Preformatted",
    "Section",
    "Strong",
    "Table",
    "slug",
]


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen.

    >>> slug("Study 1: Attack model × shadows (Table 1)")
    'study-1-attack-model--shadows-table-1'
    """
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@dataclass(frozen=True)
class Strong:
    """Emphasised text inside a paragraph or bullet."""

    text: str


Inline = str | Strong


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text and :class:`Strong` spans."""

    parts: tuple[Inline, ...]

    @classmethod
    def of(cls, *parts: Inline) -> Paragraph:
        """``Paragraph.of("AUC ", Strong("0.71"), ".")``."""
        return cls(tuple(parts))


@dataclass(frozen=True)
class Bullets:
    """A bulleted list; each item is a tuple of inline parts."""

    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True)
class Preformatted:
    """Monospaced text, shown as is (configuration dumps)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of already formatted text cells.

    ``align`` holds ``"l"`` or ``"r"`` per column (default: first column left, others right);
    ``badge_columns`` are the indices of columns whose cells are verdicts, styled as badges in HTML.
    ``groups`` (label, span) spans a header row over the columns, e.g. ``("Linear SVM", 2)`` over
    ``"ours", "paper"``; renderers without two-row headers use :meth:`flat_columns`.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    align: tuple[str, ...] = ()
    badge_columns: tuple[int, ...] = ()
    groups: tuple[tuple[str, int], ...] = ()

    def flat_columns(self) -> tuple[str, ...]:
        """Column names with their group folded in, ``"Linear SVM (paper)"``, for one-row headers."""
        if not self.groups:
            return self.columns
        labels = [g for g, span in self.groups for _ in range(span)]
        return tuple(f"{g} ({c})" if g else c for g, c in zip(labels, self.columns, strict=True))

    def alignment(self) -> tuple[str, ...]:
        """The alignment of every column."""
        if len(self.align) == len(self.columns):
            return self.align
        return ("l",) + ("r",) * (len(self.columns) - 1)


@dataclass(frozen=True)
class FigureBlock:
    """A rendered figure: PNG bytes, a file stem for the Markdown copy, a title and a caption."""

    name: str
    title: str
    caption: str
    png: bytes
    alt: str = ""
    half: bool = False  # HTML may set two half-width figures side by side


Block = Paragraph | Bullets | Preformatted | Table | FigureBlock


@dataclass(frozen=True)
class Section:
    """A titled section; ``anchor`` is its id in HTML and its slug in Markdown."""

    title: str
    anchor: str
    blocks: tuple[Block, ...] = ()
    subsections: tuple[Section, ...] = ()


@dataclass(frozen=True)
class Document:
    """A whole report: title, a one-line subtitle, an executive summary and sections."""

    title: str
    subtitle: str
    summary: tuple[Block, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def figures(self) -> list[FigureBlock]:
        """Every figure, in reading order."""
        out: list[FigureBlock] = [b for b in self.summary if isinstance(b, FigureBlock)]

        def walk(section: Section) -> None:
            out.extend(b for b in section.blocks if isinstance(b, FigureBlock))
            for sub in section.subsections:
                walk(sub)

        for s in self.sections:
            walk(s)
        return out

    def tables(self) -> list[Table]:
        """Every table, in reading order."""
        out: list[Table] = [b for b in self.summary if isinstance(b, Table)]

        def walk(section: Section) -> None:
            out.extend(b for b in section.blocks if isinstance(b, Table))
            for sub in section.subsections:
                walk(sub)

        for s in self.sections:
            walk(s)
        return out
