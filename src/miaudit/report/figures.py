"""Figures from stored results: compute (plain arrays), plot (a matplotlib Figure), render (PNG bytes).

The three steps are separate functions so each can be tested and reused: ``metric_series`` and
``gap_vs_auc`` compute; ``plot_*`` draw; ``render_png`` and ``save_png`` write; ``figure_block``
wraps the PNG for a document. ROC curves and score histograms live in :mod:`.curves`. Figures use
matplotlib's object API with the Agg canvas (never pyplot), so rendering needs no display and leaves
no global state behind.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy import stats

from miaudit._io import atomic_write_bytes
from miaudit.report.document import FigureBlock
from miaudit.report.records import SummaryRow

__all__ = [
    "PALETTE",
    "GapAucGroup",
    "Series",
    "figure_block",
    "gap_vs_auc",
    "metric_series",
    "plot_gap_vs_auc",
    "plot_grouped_bars",
    "plot_lines",
    "render_png",
    "save_png",
]

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "path.simplify": True,
}


@contextmanager
def styled() -> Iterator[None]:
    """The reports' matplotlib style, for drawing and for saving."""
    with mpl.rc_context(_STYLE):  # type: ignore[arg-type]  # keys are valid rcParams
        yield


def new_figure(width: float = 7.0, height: float = 4.2) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global figure manager), constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def place_legend(fig: Figure, ax: Any, *, max_inside: int = 5, where: str = "best") -> None:
    """A legend inside the axes where it hides least when it is short, else outside on the right."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) <= max_inside:
        ax.legend(handles, labels, loc=where, frameon=False)
    else:
        fig.legend(handles, labels, loc="outside right upper", frameon=False)


def t_band(values: NDArray[np.float64], level: float = 0.95) -> tuple[NDArray, NDArray, NDArray]:
    """Mean and Student-t interval over axis 0 of ``values`` of shape (n_seeds, n_points)."""
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf((1 + level) / 2, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


# ------------------------------------------------------------------------------ line series
@dataclass(frozen=True)
class Series:
    """One line or bar group: a metric's mean and 95% interval at each x, and the paper's value.

    ``x`` holds the setting values (numbers for lines, any labels for bars); ``low``/``high`` are
    NaN where there is a single seed; ``paper`` is NaN where the paper has no value.
    """

    label: str
    x: tuple[Any, ...]
    mean: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    paper: NDArray[np.float64]

    @property
    def has_paper(self) -> bool:
        """Whether the paper has a value at any x."""
        return bool(np.isfinite(self.paper).any())


def metric_series(
    rows: Iterable[SummaryRow],
    *,
    metric: str,
    x: str,
    group_by: str | None = None,
    label: Callable[[Any], str] = str,
    sort: Callable[[str, Any], Any] | None = None,
) -> list[Series]:
    """Group summary rows of one metric into series along a setting column.

    Parameters
    ----------
    rows : iterable of SummaryRow
        Rows of one study (other metrics are ignored).
    metric : str
        The metric to plot, e.g. ``"accuracy"``.
    x : str
        Setting column along the x axis, e.g. ``"n_shadows"``.
    group_by : str, optional
        Setting column that makes one series per value, e.g. ``"attack_model"``.
    label : callable
        Series label from the group value.
    sort : callable, optional
        ``sort(column, value)`` key ordering x values and groups.
    """
    key = sort or (lambda _dim, v: (v is None, v))
    groups: dict[Any, dict[Any, SummaryRow]] = {}
    for r in rows:
        xv = getattr(r, x)
        if r.metric != metric or xv is None:
            continue
        g = getattr(r, group_by) if group_by else None
        groups.setdefault(g, {}).setdefault(xv, r)
    out = []
    for g in sorted(groups, key=lambda v: key(group_by or "", v)):
        pts = groups[g]
        xs = sorted(pts, key=lambda v: key(x, v))
        col = [pts[v] for v in xs]
        out.append(
            Series(
                label=label(g) if group_by else label(metric),
                x=tuple(xs),
                mean=np.array([r.mean for r in col], dtype=float),
                low=np.array([r.low for r in col], dtype=float),
                high=np.array([r.high for r in col], dtype=float),
                paper=np.array([math.nan if r.paper is None else r.paper for r in col], dtype=float),
            )
        )
    return out


def _yerr(s: Series) -> NDArray[np.float64] | None:
    if not np.isfinite(s.low).any():
        return None
    low = np.where(np.isfinite(s.low), s.mean - s.low, 0.0)
    high = np.where(np.isfinite(s.high), s.high - s.mean, 0.0)
    return np.vstack([np.maximum(low, 0), np.maximum(high, 0)])


def plot_lines(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    chance: float | None = None,
    log_x: bool = False,
) -> Figure:
    """Lines with 95% error bars, and the paper's values as hollow diamonds on dashed lines."""
    with styled():
        fig = new_figure()
        ax = fig.add_subplot()
        xs_all = sorted({float(v) for s in series for v in s.x})
        step = min(np.diff(xs_all)) if len(xs_all) > 1 else 1.0
        for i, s in enumerate(series):
            color, marker = PALETTE[i % len(PALETTE)], _MARKERS[i % len(_MARKERS)]
            x = np.array(s.x, dtype=float)
            shift = 0.0 if log_x else (i - (len(series) - 1) / 2) * 0.05 * step
            x_ours = x * (1 + (i - (len(series) - 1) / 2) * 0.02) if log_x else x + shift
            ax.errorbar(
                x_ours, s.mean, yerr=_yerr(s), color=color, marker=marker, ms=5, lw=1.6, capsize=3, label=s.label
            )
            if s.has_paper:
                ok = np.isfinite(s.paper)
                ax.plot(x[ok], s.paper[ok], color=color, marker="D", ms=6, mfc="white", mew=1.4, ls="--", lw=0.9)
        if any(s.has_paper for s in series):
            ax.plot(
                [],
                [],
                color="0.25",
                marker="D",
                ms=6,
                mfc="white",
                mew=1.4,
                ls="--",
                lw=0.9,
                label="paper" if len(series) == 1 else "paper (colour of its series)",
            )
        if chance is not None:
            ax.axhline(chance, color="0.4", ls=":", lw=1, label="chance")
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs_all, [f"{v:,.0f}" if v.is_integer() else f"{v:g}" for v in xs_all])
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        place_legend(fig, ax, max_inside=3)
    return fig


def plot_grouped_bars(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    baseline: float = 0.0,
    xtick_label: Callable[[Any], str] = str,
    sort: Callable[[Any], Any] | None = None,
) -> Figure:
    """Bars per x group and series with 95% error bars; the paper's values as black diamonds.

    Bars start at ``baseline`` (use 0.5, chance, for accuracy and AUC), so bars below it point down.
    """
    with styled():
        fig = new_figure()
        ax = fig.add_subplot()
        groups = sorted({v for s in series for v in s.x}, key=sort)
        pos = {v: i for i, v in enumerate(groups)}
        width = 0.8 / max(len(series), 1)
        paper_labelled = False
        for i, s in enumerate(series):
            x = np.array([pos[v] for v in s.x], dtype=float) - 0.4 + width * (i + 0.5)
            ax.bar(
                x,
                s.mean - baseline,
                width * 0.92,
                bottom=baseline,
                color=PALETTE[i % len(PALETTE)],
                yerr=_yerr(s),
                capsize=2.5,
                error_kw={"lw": 1, "ecolor": "0.2"},
                label=s.label,
            )
            ok = np.isfinite(s.paper)
            if ok.any():
                ax.plot(
                    x[ok],
                    s.paper[ok],
                    ls="none",
                    marker="D",
                    ms=5.5,
                    mfc="white",
                    mec="black",
                    mew=1.3,
                    label=None if paper_labelled else "paper",
                )
                paper_labelled = True
        ax.axhline(baseline, color="0.3", lw=0.8)
        ax.set_xticks(range(len(groups)), [xtick_label(v) for v in groups])
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    return fig


# -------------------------------------------------------------------------- gap vs AUC
@dataclass(frozen=True)
class GapAucGroup:
    """Settings of one study: train-test gap and attack AUC, each a mean with its 95% interval."""

    label: str
    gap: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    auc: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def gap_vs_auc(
    rows: Iterable[SummaryRow], *, study_title: Callable[[str], str] = str
) -> tuple[list[GapAucGroup], float]:
    """Per study, each setting's generalisation gap and attack AUC; and Pearson's r over all settings.

    Returns ``(groups, r)``; ``r`` is NaN with fewer than 3 settings or no spread.
    """
    by_setting: dict[tuple[str, str], dict[str, SummaryRow]] = {}
    for row in rows:
        if row.metric in ("generalization_gap", "auc"):
            by_setting.setdefault((row.study, row.setting_id), {})[row.metric] = row
    studies: dict[str, list[tuple[SummaryRow, SummaryRow]]] = {}
    for (study, _), m in by_setting.items():
        if "generalization_gap" in m and "auc" in m:
            studies.setdefault(study, []).append((m["generalization_gap"], m["auc"]))
    groups = []
    for study in sorted(studies, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s)):
        pairs = studies[study]

        def cols(k: int, pairs: list[tuple[SummaryRow, SummaryRow]] = pairs) -> tuple[NDArray, NDArray, NDArray]:
            mean, low, high = (np.array([getattr(p[k], a) for p in pairs], float) for a in ("mean", "low", "high"))
            return mean, low, high

        groups.append(GapAucGroup(study_title(study), cols(0), cols(1)))
    gx = np.concatenate([g.gap[0] for g in groups]) if groups else np.zeros(0)
    ay = np.concatenate([g.auc[0] for g in groups]) if groups else np.zeros(0)
    r = math.nan
    if gx.size >= 3 and gx.std() > 0 and ay.std() > 0:
        r = float(np.corrcoef(gx, ay)[0, 1])
    return groups, r


def plot_gap_vs_auc(groups: Sequence[GapAucGroup], r: float, *, title: str) -> Figure:
    """Attack AUC against the target's train-test accuracy gap, one colour per study, 95% bars."""

    def err(t: tuple[NDArray, NDArray, NDArray]) -> NDArray | None:
        mean, low, high = t
        if not np.isfinite(low).any():
            return None
        return np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)]).clip(0)

    with styled():
        fig = new_figure(7.0, 5.6)
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            ax.errorbar(
                g.gap[0],
                g.auc[0],
                xerr=err(g.gap),
                yerr=err(g.auc),
                ls="none",
                marker=_MARKERS[i % len(_MARKERS)],
                ms=5,
                color=PALETTE[i % len(PALETTE)],
                elinewidth=0.8,
                capsize=1.5,
                alpha=0.9,
                label=g.label,
            )
        ax.axhline(0.5, color="0.4", ls=":", lw=1, label="chance (AUC 0.5)")
        n = sum(g.gap[0].size for g in groups)
        if math.isfinite(r):
            ax.text(
                0.02,
                0.97,
                f"Pearson r = {r:.2f} over {n} settings (means)",
                transform=ax.transAxes,
                va="top",
                fontsize=9,
            )
        ax.set(
            title=title, xlabel="target train accuracy − test accuracy (generalisation gap)", ylabel="attack ROC AUC"
        )
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    return fig


# -------------------------------------------------------------------------------- output
def render_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (Agg), without a timestamp or software tag, so output is reproducible."""
    buf = io.BytesIO()
    with styled():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save_png(png: bytes, path: Path) -> Path:
    """Write PNG bytes atomically (a temporary file, then a rename) and return ``path``."""
    return atomic_write_bytes(path, png)


# ------------------------------------------------------------------------ document blocks
def figure_block(name: str, fig: Figure, *, title: str, caption: str, alt: str = "", half: bool = False) -> FigureBlock:
    """Render ``fig`` to PNG and wrap it as a document figure (the matplotlib figure is released)."""
    png = render_png(fig)
    fig.clear()
    return FigureBlock(name=name, title=title, caption=caption, png=png, alt=alt or title, half=half)
