"""How reports name things: settings, metrics, studies, and how they format numbers.

One place, so that tables, figures and text say the same thing the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from miaudit.report.records import Interval, SettingValue

__all__ = [
    "ATTACK_MODEL_NAMES",
    "METRIC_NAMES",
    "STUDY_TITLES",
    "dim_header",
    "dim_value",
    "fmt_bracket",
    "fmt_ci",
    "fmt_interval_text",
    "fmt_num",
    "fmt_seconds",
    "metric_name",
    "setting_label",
    "sort_value",
]

ATTACK_MODEL_NAMES = {
    "lr": "Logistic regression",
    "tree": "Decision tree",
    "rbf-svm": "RBF kernel SVM",
    "linear-svm": "Linear SVM",
}
_ATTACK_ORDER = {name: i for i, name in enumerate(ATTACK_MODEL_NAMES)}
_ARCH_ORDER = {"simple": 0, "dense": 1, "dropout": 2}

METRIC_NAMES = {
    "accuracy": "attack accuracy",
    "precision": "attack precision",
    "recall": "attack recall",
    "balanced_accuracy": "balanced accuracy",
    "advantage": "membership advantage",
    "auc": "ROC AUC",
    "tpr_at_fpr_0.01": "TPR at 1% FPR",
    "tpr_at_fpr_0.001": "TPR at 0.1% FPR",
    "tpr_at_fpr_0": "TPR at 0 FPR",
    "target_train_accuracy": "target train accuracy",
    "target_test_accuracy": "target test accuracy",
    "served_test_accuracy": "test accuracy through the API",
    "generalization_gap": "train-test gap",
    "n_members": "members",
    "n_nonmembers": "non-members",
    "queries": "queries",
    "attack_time_s": "attack time (s)",
}

#: Fallback titles when the manifest does not name a study.
STUDY_TITLES = {
    "1": "Attack model × number of shadow models",
    "2": "Number of shadow models",
    "3": "Target training size",
    "4": "Number of classes",
    "5": "Overfitting: dense network vs dropout",
    "6": "Matched vs mismatched shadow architecture",
}

_HEADERS = {
    "attack": "attack",
    "attack_model": "attack model",
    "n_shadows": "shadows",
    "target_size": "target size",
    "classes": "classes",
    "arch": "target network",
    "shadow_arch": "shadow network",
}


def metric_name(metric: str) -> str:
    """A reader's name for a metric column, e.g. ``"tpr_at_fpr_0.001"`` -> ``"TPR at 0.1% FPR"``."""
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    if metric.startswith("tpr_at_fpr_"):
        level = metric.removeprefix("tpr_at_fpr_")
        try:
            return f"TPR at {float(level) * 100:g}% FPR"
        except ValueError:
            return metric
    return metric.replace("_", " ")


def dim_header(dim: str) -> str:
    """Column header of a setting dimension."""
    return _HEADERS.get(dim, dim.replace("_", " "))


def dim_value(dim: str, value: Any) -> str:
    """A setting value as a reader would write it: ``("target_size", 3000)`` -> ``"3,000"``."""
    if value is None or value == "":
        return "–"
    if dim == "attack_model":
        return ATTACK_MODEL_NAMES.get(str(value), str(value))
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def sort_value(dim: str, value: Any) -> tuple[int, float, str]:
    """A key that sorts setting values in the order the paper uses."""
    if value is None:
        return (2, 0.0, "")
    if dim == "attack_model":
        return (0, float(_ATTACK_ORDER.get(str(value), 99)), str(value))
    if dim in ("arch", "shadow_arch"):
        return (0, float(_ARCH_ORDER.get(str(value), 99)), str(value))
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def setting_label(setting: Mapping[str, SettingValue], *, dims: tuple[str, ...] | None = None) -> str:
    """A short description of a setting, e.g. ``"shokri attack, Linear SVM, 6 shadows, simple target"``."""
    parts = []
    for dim in dims or ("attack", "attack_model", "n_shadows", "arch", "shadow_arch", "target_size", "classes"):
        value = setting.get(dim)
        if value is None or value == "":
            continue
        if dim == "attack":
            parts.append(f"{value} attack")
        elif dim == "attack_model":
            parts.append(dim_value(dim, value))
        elif dim == "n_shadows":
            parts.append(f"{value} shadow{'s' if value != 1 else ''}")
        elif dim == "arch":
            parts.append(f"{value} target")
        elif dim == "shadow_arch":
            if value != setting.get("arch"):
                parts.append(f"{value} shadow models")
        elif dim == "target_size":
            parts.append(f"{value:,} members")
        elif dim == "classes":
            parts.append(f"{value} classes")
    return ", ".join(parts)


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; an en dash for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_ci(iv: Interval, digits: int = 3) -> str:
    """``"0.612 ± 0.014"`` (mean ± half-width of the 95% interval), or ``"0.612"`` with one seed."""
    if not math.isfinite(iv.mean):
        return "–"
    if not iv.has_ci:
        return fmt_num(iv.mean, digits)
    half = max(iv.high - iv.mean, iv.mean - iv.low)
    return f"{iv.mean:.{digits}f} ± {half:.{digits}f}"


def fmt_bracket(iv: Interval, digits: int = 3) -> str:
    """``"0.612 [0.598, 0.626]"`` (mean and 95% interval), or the mean alone, ``"0.612"``, without an interval.

    >>> fmt_bracket(Interval(0.5, 0.4, 0.6, 0.1, 5)), fmt_bracket(Interval(1200.0), 0)
    ('0.500 [0.400, 0.600]', '1200')
    """
    if not math.isfinite(iv.mean):
        return "–"
    if not iv.has_ci:
        return f"{iv.mean:.{digits}f}"
    return f"{iv.mean:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def fmt_interval_text(iv: Interval, digits: int = 3) -> str:
    """``"0.612 (95% CI [0.598, 0.626], 5 seeds)"`` for prose, or ``"0.612 (1 seed, no interval)"``."""
    if not iv.has_ci:
        return f"{fmt_num(iv.mean, digits)} ({iv.n} seed{'s' if iv.n != 1 else ''}, no interval)"
    return f"{iv.mean:.{digits}f} (95% CI [{iv.low:.{digits}f}, {iv.high:.{digits}f}], {iv.n} seeds)"


def fmt_seconds(value: Any) -> str:
    """Seconds as ``"12.3 s"`` or ``"1 h 02 min"``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    s = float(value)
    if s < 120:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
