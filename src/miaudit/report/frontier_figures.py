"""The figures of a defence study: the privacy-utility frontier, and attacks against API policies.

Compute (:func:`frontier_panels`: plain arrays per panel) is separate from drawing
(:func:`plot_frontier`, :func:`plot_policies`); both draw on their own Agg canvas in the reports'
style (:mod:`.figures`). Point labels are placed by :func:`annotate_points`, which tries a few
positions around each point and keeps the first that overlaps no other label or point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from numpy.typing import NDArray

from miaudit.report.arms import LEAKAGE_METRICS, TPR, Arm, pareto_front
from miaudit.report.figures import PALETTE, new_figure, styled
from miaudit.report.labels import metric_name
from miaudit.report.records import Interval

__all__ = ["FrontierPanel", "annotate_points", "frontier_panels", "plot_frontier", "plot_policies"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
#: Candidate label positions: offset in points, alignment, and whether a leader line is drawn.
_OFFSETS = (
    (8, 4, "left", "bottom", False),
    (8, -4, "left", "top", False),
    (-8, 4, "right", "bottom", False),
    (-8, -4, "right", "top", False),
    (0, 9, "center", "bottom", False),
    (0, -9, "center", "top", False),
    (16, 14, "left", "bottom", True),
    (-16, 14, "right", "bottom", True),
    (16, -14, "left", "top", True),
    (-16, -14, "right", "top", True),
    (0, 22, "center", "bottom", True),
    (0, -22, "center", "top", True),
    (28, 0, "left", "center", True),
    (-28, 0, "right", "center", True),
    (24, 26, "left", "bottom", True),
    (-24, 26, "right", "bottom", True),
    (24, -26, "left", "top", True),
    (-24, -26, "right", "top", True),
)


def _triple(iv: Interval) -> tuple[float, float, float]:
    return iv.mean, iv.low, iv.high


@dataclass(frozen=True)
class FrontierPanel:
    """One panel of the frontier: each arm's utility and its strongest attack's leakage (mean, low, high).

    ``utility`` and ``leakage`` are ndarrays of shape (n_arms, 3); ``attacks`` names each arm's
    strongest attack on this metric; ``front`` holds the indices on the Pareto front, by rising utility.
    """

    metric: str
    chance: float
    utility: NDArray[np.float64]
    leakage: NDArray[np.float64]
    attacks: tuple[str, ...]
    front: tuple[int, ...]


def frontier_panels(arms: Sequence[Arm]) -> list[FrontierPanel]:
    """One panel per leakage metric (AUC, TPR at 0.1% FPR), for the strongest attack on each arm."""
    out = []
    utility = np.array([_triple(a.utility) for a in arms], dtype=float).reshape(len(arms), 3)
    for metric, chance in LEAKAGE_METRICS.items():
        strongest = [a.strongest(metric) for a in arms]
        leakage = np.array([_triple(s.leakage(metric)) for s in strongest], dtype=float).reshape(len(arms), 3)
        front = pareto_front(utility[:, 0].tolist(), leakage[:, 0].tolist())
        out.append(FrontierPanel(metric, chance, utility, leakage, tuple(s.attack for s in strongest), tuple(front)))
    return out


def _err(values: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Error bar lengths (2, n) from (n, 3) rows of (mean, low, high); None when no row has an interval."""
    mean, low, high = values[:, 0], values[:, 1], values[:, 2]
    if not np.isfinite(low).any():
        return None
    return np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)]).clip(0)


def _overlap(a: Bbox, boxes: Sequence[Bbox]) -> float:
    total = 0.0
    for b in boxes:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        if w > 0 and h > 0:
            total += w * h
    return total


def annotate_points(
    ax: Any,
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    *,
    spans: NDArray[np.float64] | None = None,
    size: float = 7.5,
) -> None:
    """Label each point with the first candidate position that overlaps no label, point, bar or the axes' edge.

    ``spans`` (optional, ndarray of shape (n_points, 4): x low, x high, y low, y high) are the error
    bars, avoided too. When every position overlaps something, the one overlapping least is kept.
    Labels take no part in the layout, so the axes do not move once they are placed. Call after the
    axes' limits are set.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    ok = [i for i in range(len(labels)) if math.isfinite(x[i]) and math.isfinite(y[i])]
    to_px = ax.transData.transform
    taken = []
    for i in ok:
        px, py = to_px((x[i], y[i]))
        taken.append(Bbox.from_extents(px - 9, py - 9, px + 9, py + 9))  # the (ringed) marker
    bars = []
    if spans is not None:
        for i in ok:
            xl, xh, yl, yh = (
                v if math.isfinite(v) else c for v, c in zip(spans[i], (x[i], x[i], y[i], y[i]), strict=True)
            )
            (x0, y0), (x1, y1) = to_px((xl, yl)), to_px((xh, yh))
            px, py = to_px((x[i], y[i]))
            bars += [Bbox.from_extents(x0, py - 2, x1, py + 2), Bbox.from_extents(px - 2, y0, px + 2, y1)]
    for i in sorted(ok, key=lambda i: (-y[i], x[i])):
        best: tuple[float, Any, Bbox] | None = None
        for dx, dy, ha, va, leader in _OFFSETS:
            text = ax.annotate(
                labels[i],
                (x[i], y[i]),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=size,
                color="0.15",
                arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6} if leader else None,
            )
            box = text.get_window_extent(renderer).expanded(1.04, 1.15)
            outside = box.width * box.height - _overlap(box, [frame])
            cost = _overlap(box, taken) + 0.5 * _overlap(box, bars) + 2 * outside
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0:
                break
        if best is not None:
            best[1].set_in_layout(False)
            taken.append(best[2])


def _pad_limits(
    ax: Any, values: NDArray[np.float64], *, axis: str, floor: float | None = None, min_span: float = 0.0
) -> None:
    """Limits around the finite ``values`` with room for labels above; at least ``min_span`` wide."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = max(0.08 * (hi - lo), 0.01)
    lo, hi = lo - pad, hi + pad * 2.5
    if floor is not None:
        lo = max(lo, floor)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)


def plot_frontier(
    panels: Sequence[FrontierPanel], *, labels: Sequence[str], families: Sequence[str], title: str
) -> Figure:
    """Utility (x) against the strongest attack's leakage (y), one panel per metric, the Pareto front marked.

    Points are coloured by the kind of defence; error bars are 95% intervals over seeds in both
    directions; the Pareto front is ringed and joined in order of utility; each point is labelled.
    """
    kinds = list(dict.fromkeys(families))
    style = {k: (PALETTE[i % len(PALETTE)], _MARKERS[i % len(_MARKERS)]) for i, k in enumerate(kinds)}
    with styled():
        fig = new_figure(9.0, 4.8 * len(panels) + 0.6)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, p in zip(axes, panels, strict=True):
            u, v = p.utility, p.leakage
            for kind in kinds:
                idx = [i for i, f in enumerate(families) if f == kind]
                color, marker = style[kind]
                ax.errorbar(
                    u[idx, 0], v[idx, 0], xerr=_err(u[idx]), yerr=_err(v[idx]), ls="none", marker=marker, ms=6,
                    color=color, elinewidth=0.8, capsize=2, label=kind, zorder=3,
                )  # fmt: skip
            if p.front:
                f = list(p.front)
                ax.plot(u[f, 0], v[f, 0], color="0.1", lw=1.3, zorder=2, label="Pareto front (best utility for "
                        "the leakage)")  # fmt: skip
                ax.scatter(u[f, 0], v[f, 0], s=150, facecolors="none", edgecolors="0.1", lw=1.2, zorder=4)
            ax.axhline(p.chance, color="0.4", ls=":", lw=1, label="chance")
            _pad_limits(ax, np.r_[u[:, 0], u[:, 1], u[:, 2]], axis="x")
            _pad_limits(
                ax, np.r_[v[:, 0], v[:, 1], v[:, 2], p.chance], axis="y", floor=0.0 if p.metric != "auc" else None
            )
            ax.set(
                xlabel="utility: test accuracy of the answers the attacker gets",
                ylabel=f"{metric_name(p.metric)}, strongest attack",
            )
            ax.set_title(f"{metric_name(p.metric)} (higher: more leakage)", fontsize=10, loc="left")
            spans = np.c_[u[:, 1], u[:, 2], v[:, 1], v[:, 2]]
            annotate_points(ax, u[:, 0].tolist(), v[:, 0].tolist(), labels, spans=spans)
        fig.suptitle(title, fontsize=11)
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(handles), 4), frameon=False, fontsize=8)
    return fig


def plot_policies(arms: Sequence[Arm], attacks: Sequence[str], *, title: str) -> Figure:
    """Per policy: the utility through the API (top), each attack's AUC (middle) and TPR at 0.1% FPR (bottom)."""
    n = len(arms)
    x = np.arange(n, dtype=float)
    width = 0.6 / max(len(attacks), 1)
    with styled():
        fig = new_figure(8.0, 8.8)
        top, middle, bottom = fig.subplots(3, 1, sharex=True, height_ratios=(1.0, 2.0, 2.0))
        util = np.array([_triple(a.utility) for a in arms], dtype=float).reshape(n, 3)
        top.errorbar(
            x, util[:, 0], yerr=_err(util), ls="none", marker="*", ms=12, color="0.1", mfc="#F0E442", capsize=2,
            label="utility: test accuracy of the API's answers",
        )  # fmt: skip
        _pad_limits(top, np.r_[util[:, 0], util[:, 1], util[:, 2]], axis="y", min_span=0.04)
        top.set_ylabel("test accuracy\nthrough the API")
        for ax, metric in ((middle, "auc"), (bottom, TPR)):
            for j, name in enumerate(attacks):
                vals = np.array(
                    [_triple(r.leakage(metric)) if (r := a.attack(name)) else (math.nan,) * 3 for a in arms],
                    dtype=float,
                ).reshape(n, 3)
                ax.errorbar(
                    x - 0.3 + width * (j + 0.5), vals[:, 0], yerr=_err(vals), ls="none", marker=_MARKERS[j % 9],
                    ms=6, color=PALETTE[j % len(PALETTE)], elinewidth=0.9, capsize=2, label=f"attack: {name}",
                )  # fmt: skip
            ax.axhline(LEAKAGE_METRICS[metric], color="0.4", ls=":", lw=1, label="chance")
            ax.set_ylabel(metric_name(metric))
        bottom.set_xticks(x, [a.label for a in arms], rotation=20 if n > 5 else 0, ha="right" if n > 5 else "center")
        bottom.set_xlabel("what the API answers (output policy)")
        top.set_title(title, fontsize=11)
        handles, names = top.get_legend_handles_labels()
        h2, n2 = middle.get_legend_handles_labels()
        fig.legend(handles + h2, names + n2, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
    return fig
