"""ROC curves and score histograms from stored per-record scores: compute, plot, wrap.

``roc_band``, ``pooled_roc`` and ``score_histograms`` compute plain arrays from a
:class:`~.records.ScoreSet`; ``plot_roc``, ``plot_pooled_roc`` and ``plot_histogram`` draw them;
``score_figures`` makes the three figures a report shows for one attack. The curves use
:mod:`miaudit.metrics`, the same functions as the attacks' records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from miaudit.metrics import auc, mean_ci, roc_curve
from miaudit.report.document import FigureBlock
from miaudit.report.figures import PALETTE, figure_block, new_figure, place_legend, styled, t_band
from miaudit.report.labels import fmt_ci
from miaudit.report.records import Interval, ScoreSet

__all__ = [
    "HistogramData",
    "PooledRoc",
    "RocBand",
    "plot_histogram",
    "plot_pooled_roc",
    "plot_roc",
    "pooled_roc",
    "roc_band",
    "score_figures",
    "score_histograms",
]


# -------------------------------------------------------------------------------------- ROC
@dataclass(frozen=True)
class RocBand:
    """ROC curves of one attack over seeds: exact curves, and mean TPR with a 95% band on a grid."""

    label: str
    fpr: NDArray[np.float64]
    mean: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    curves: tuple[tuple[NDArray[np.float64], NDArray[np.float64]], ...]
    auc: Interval
    min_fpr: float


def _grid() -> NDArray[np.float64]:
    return np.unique(np.r_[0.0, np.logspace(-5, 0, 301), np.linspace(0, 1, 201)])


def roc_band(scores: ScoreSet, *, grid: NDArray[np.float64] | None = None) -> RocBand:
    """ROC of each seed, and the mean TPR with a 95% t-band on a common FPR grid.

    At each grid FPR ``f`` a seed's TPR is the highest TPR reached with FPR <= ``f`` (the rule of
    :func:`miaudit.metrics.tpr_at_fpr`), so the mean curve agrees with the stored TPR@FPR values.
    """
    fpr_grid = _grid() if grid is None else np.asarray(grid, dtype=float)
    curves, tprs, aucs, n0s = [], [], [], []
    for member, nonmember in scores.by_seed.values():
        y = np.r_[np.ones(member.size, bool), np.zeros(nonmember.size, bool)]
        s = np.r_[member, nonmember]
        fpr, tpr, _ = roc_curve(y, s)
        curves.append((fpr, tpr))
        tprs.append(tpr[np.searchsorted(fpr, fpr_grid, side="right") - 1])
        aucs.append(auc(y, s))
        n0s.append(nonmember.size)
    mean, low, high = t_band(np.vstack(tprs))
    ci = mean_ci(aucs)
    return RocBand(
        label=scores.label,
        fpr=fpr_grid,
        mean=mean,
        low=np.clip(low, 0, 1),
        high=np.clip(high, 0, 1),
        curves=tuple(curves),
        auc=Interval(float(ci["mean"]), float(ci["low"]), float(ci["high"]), float(ci["std"]), len(aucs)),
        min_fpr=1.0 / max(n0s),
    )


def plot_roc(bands: Sequence[RocBand], *, log: bool, title: str, per_seed: bool | None = None) -> Figure:
    """ROC curves with the chance line; log-log axes show the low-FPR region that matters.

    With one attack, each seed's exact curve is drawn thin behind the mean and its band.
    """
    per_seed = len(bands) == 1 if per_seed is None else per_seed
    lower = min(b.min_fpr for b in bands)
    with styled():
        fig = new_figure(6.0, 5.0)
        ax = fig.add_subplot()
        for i, b in enumerate(bands):
            color = PALETTE[i % len(PALETTE)]
            keep = b.fpr >= lower if log else np.ones_like(b.fpr, bool)
            if per_seed:
                for j, (f, t) in enumerate(b.curves):
                    ax.plot(
                        f,
                        t,
                        color=color,
                        lw=0.7,
                        alpha=0.35,
                        drawstyle="steps-post",
                        label="single seeds" if j == 0 and i == 0 else None,
                    )
            if np.isfinite(b.low).any():
                ax.fill_between(b.fpr[keep], b.low[keep], b.high[keep], color=color, alpha=0.18, lw=0, step="post")
            name = f"{b.label}: AUC {fmt_ci(b.auc)}" + (f" ({b.auc.n} seeds)" if b.auc.n > 1 else "")
            ax.plot(b.fpr[keep], b.mean[keep], color=color, lw=1.8, drawstyle="steps-post", label=name)
        ax.plot([lower if log else 0, 1], [lower if log else 0, 1], color="0.4", ls="--", lw=1, label="chance")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log", nonpositive="clip")
            ax.set_xlim(lower, 1)
            ax.set_ylim(lower, 1.02)
            for level in (0.01, 0.001):
                if level >= lower:
                    ax.axvline(level, color="0.5", lw=0.7, ls=":")
                    ax.text(
                        level,
                        lower * 1.3,
                        f" FPR {level:g}",
                        fontsize=7.5,
                        color="0.35",
                        rotation=90,
                        va="bottom",
                        ha="right",
                    )
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_aspect("equal")
        ax.set(title=title, xlabel="false-positive rate", ylabel="true-positive rate")
        ax.legend(loc="lower right" if not log else "upper left", frameon=False)
    return fig


@dataclass(frozen=True)
class PooledRoc:
    """One ROC curve from every seed's scores pooled together.

    ``fpr`` and ``tpr`` are ndarrays of shape (n_thresholds + 1,), as :func:`miaudit.metrics.roc_curve`
    returns them; ``auc`` is the AUC of the pooled scores.
    """

    label: str
    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    auc: float
    n_members: int
    n_nonmembers: int
    n_seeds: int

    @property
    def min_fpr(self) -> float:
        """The smallest non-zero FPR the curve can reach: one of all the pooled non-members."""
        return 1.0 / self.n_nonmembers


def pooled_roc(scores: ScoreSet, *, label: str | None = None) -> PooledRoc:
    """The ROC of all seeds' member and non-member scores pooled into one sample.

    Pooling keeps one curve per attack however many seeds ran, and reaches lower FPRs (one in all
    the seeds' non-members) than any single seed.
    """
    member = np.concatenate([m for m, _ in scores.by_seed.values()])
    nonmember = np.concatenate([n for _, n in scores.by_seed.values()])
    y = np.r_[np.ones(member.size, bool), np.zeros(nonmember.size, bool)]
    s = np.r_[member, nonmember]
    fpr, tpr, _ = roc_curve(y, s)
    return PooledRoc(
        label=label or scores.label,
        fpr=np.asarray(fpr, dtype=np.float64),
        tpr=np.asarray(tpr, dtype=np.float64),
        auc=float(auc(y, s)),
        n_members=int(member.size),
        n_nonmembers=int(nonmember.size),
        n_seeds=len(scores.by_seed),
    )


def plot_pooled_roc(curves: Sequence[PooledRoc], *, title: str) -> Figure:
    """ROC curves on log-log axes, one colour per curve, with the chance line and FPR 1% and 0.1% marked."""
    lower = min(c.min_fpr for c in curves)
    with styled():
        fig = new_figure(6.4, 5.0)
        ax = fig.add_subplot()
        for i, c in enumerate(curves):
            keep = c.fpr > 0
            ax.plot(
                c.fpr[keep],
                c.tpr[keep],
                color=PALETTE[i % len(PALETTE)],
                ls=("-", "--", "-.", ":")[i // len(PALETTE) % 4],
                lw=1.7,
                drawstyle="steps-post",
                label=f"{c.label}: pooled AUC {c.auc:.3f}",
            )
        ax.plot([lower, 1], [lower, 1], color="0.4", ls="--", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log", nonpositive="clip")
        ax.set_xlim(lower, 1)
        ax.set_ylim(lower, 1.02)
        for level in (0.01, 0.001):
            if level >= lower:
                ax.axvline(level, color="0.5", lw=0.7, ls=":")
        ax.set(title=title, xlabel="false-positive rate (log)", ylabel="true-positive rate (log)")
        place_legend(fig, ax, max_inside=6, where="upper left")
    return fig


# ------------------------------------------------------------------------------- histograms
@dataclass(frozen=True)
class HistogramData:
    """Density of membership scores per bin, mean and 95% interval over seeds, for both groups."""

    label: str
    edges: NDArray[np.float64]
    member: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    nonmember: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    n_members: int
    n_nonmembers: int
    n_seeds: int


def score_histograms(scores: ScoreSet, *, bins: int = 30) -> HistogramData:
    """Histograms of members' and non-members' scores on common bins, averaged over seeds.

    Bins span the 0.1%-99.9% quantiles of all scores; values beyond land in the end bins.
    """
    pooled = np.concatenate([np.r_[m, n] for m, n in scores.by_seed.values()])
    lo, hi = np.quantile(pooled, [0.001, 0.999])
    if not hi > lo:
        lo, hi = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def dens(values: NDArray[np.float64]) -> NDArray[np.float64]:
        counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges, density=True)
        return counts

    mem = np.vstack([dens(m) for m, _ in scores.by_seed.values()])
    non = np.vstack([dens(n) for _, n in scores.by_seed.values()])
    first = next(iter(scores.by_seed.values()))
    return HistogramData(
        scores.label, edges, t_band(mem), t_band(non), first[0].size, first[1].size, len(scores.by_seed)
    )


def plot_histogram(hist: HistogramData, *, title: str, xlabel: str = "membership score") -> Figure:
    """Members' and non-members' score densities (mean over seeds), with a 95% band over seeds."""
    with styled():
        fig = new_figure()
        ax = fig.add_subplot()
        parts = (
            ("non-members", hist.nonmember, PALETTE[0], hist.n_nonmembers),
            ("members", hist.member, PALETTE[1], hist.n_members),
        )
        for name, (mean, low, high), color, n in parts:
            if np.isfinite(low).any():
                ax.stairs(
                    high,
                    hist.edges,
                    baseline=np.maximum(low, 0),
                    fill=True,
                    alpha=0.22,
                    color=color,
                    label=f"{name}: 95% band over seeds",
                )
            else:
                ax.stairs(mean, hist.edges, fill=True, alpha=0.2, color=color)
            ax.stairs(mean, hist.edges, color=color, lw=1.6, label=f"{name} ({n:,} per seed)")
        seeds = f"mean over {hist.n_seeds} seeds" if hist.n_seeds > 1 else "one seed"
        ax.set(title=title, xlabel=xlabel, ylabel=f"density ({seeds})")
        place_legend(fig, ax)
    return fig


def score_figures(scores: ScoreSet, *, prefix: str, what: str, short: str | None = None) -> list[FigureBlock]:
    """ROC on linear and log-log axes, and the score histograms, of one attack's stored scores.

    ``what`` names the attack in captions, e.g. ``"Linear SVM, 6 shadows, simple target"``;
    ``short`` (default: the scores' label) in the plots' own titles.
    """
    short = short or scores.label
    band = roc_band(scores)
    n_seeds = len(scores.by_seed)
    spread = (
        f"Thin lines: each of the {n_seeds} seeds' exact ROC; thick line: mean TPR at each FPR; "
        "band: 95% t-interval over seeds."
        if n_seeds > 1
        else "One seed: its exact ROC curve (no interval)."
    )
    hist = score_histograms(scores)
    return [
        figure_block(
            f"{prefix}roc_linear",
            plot_roc([band], log=False, title=f"ROC: {short}"),
            title=f"ROC curve of {what}",
            caption=f"{spread} Dashed diagonal: chance (a random guess).",
            half=True,
        ),
        figure_block(
            f"{prefix}roc_loglog",
            plot_roc([band], log=True, title=f"ROC, log-log axes: {short}"),
            title=f"ROC curve of {what}, log-log axes",
            caption=f"The same curves on log-log axes, which show the low false-positive region where a "
            f"membership claim is believable (dotted: FPR 1% and 0.1%). {spread} The lowest FPR shown is "
            f"1/{round(1 / band.min_fpr):,}, one non-member.",
            half=True,
        ),
        figure_block(
            f"{prefix}score_histogram",
            plot_histogram(hist, title=f"Membership scores: {short}"),
            title=f"Membership scores of members and non-members ({what})",
            caption="Density of the attack's score (higher: more likely a member) on common bins"
            + ("; lines: mean over seeds; shaded: 95% interval of each bin over seeds. " if n_seeds > 1 else ". ")
            + "The more the two shapes differ, the more the target leaks.",
        ),
    ]
