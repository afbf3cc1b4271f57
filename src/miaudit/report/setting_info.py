"""``settings.json``: every setting of a run in full, by id, read into typed records.

The columns of ``results.csv`` name a setting's attack and target (architecture, size, classes) but
not its defence: a study of defences (DP-SGD, weight decay, an output policy at the API) has arms
that share every column and differ only in their training recipe or in what the API answers. The
run writes each setting in full to ``settings.json`` (``{setting_id: setting}``, see
``docs/run-format.md``); this module reads what a report needs of it: the arm's ``label``, its
training recipe, its ``output_policy`` and ``transport``. Runs written before the file existed have
none, and their reports fall back to setting ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miaudit.report.records import RERUN, ReportError

__all__ = ["SETTINGS_FILE", "SettingInfo", "read_settings"]

SETTINGS_FILE = "settings.json"
_DP_FIELDS = ("dp_epsilon", "dp_noise_multiplier")


@dataclass(frozen=True)
class SettingInfo:
    """What ``settings.json`` says of one setting beyond the CSV columns.

    ``train`` is the setting's training recipe as the run dumped it (fields at their defaults may
    be left out: ``weight_decay``, ``dp_epsilon``, ``label_smoothing``, ``early_stopping_patience``...).
    """

    setting_id: str
    label: str | None = None
    attack: str = ""
    arch: str = ""
    output_policy: str = "full"
    transport: str = "local"
    train: Mapping[str, Any] = field(default_factory=dict)

    def _number(self, key: str) -> float | None:
        value = self.train.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    @property
    def dp_epsilon(self) -> float | None:
        """The epsilon the recipe's DP-SGD noise was calibrated to spend (None: not calibrated to one)."""
        return self._number("dp_epsilon")

    @property
    def is_dp(self) -> bool:
        """Whether the target was trained with DP-SGD (a target epsilon or a noise multiplier)."""
        return any(self._number(k) is not None for k in _DP_FIELDS)

    @property
    def family(self) -> str:
        """The kind of defence, for legends: ``DP-SGD``, ``output policy``, ``weight decay``...

        >>> SettingInfo("s", train={"dp_epsilon": 4.0}).family, SettingInfo("s", arch="dropout").family
        ('DP-SGD', 'dropout')
        >>> SettingInfo("s", output_policy="top_k:1").family, SettingInfo("s", arch="simple").family
        ('output policy', 'no defence')
        """
        if self.output_policy != "full":
            return "output policy"
        if self.is_dp:
            return "DP-SGD"
        if self._number("early_stopping_patience") is not None:
            return "early stopping"
        if (self._number("label_smoothing") or 0.0) > 0:
            return "label smoothing"
        if (self._number("weight_decay") or 0.0) > 0:
            return "weight decay"
        if self.arch == "dropout":
            return "dropout"
        if self.arch not in ("", "simple"):
            return f"{self.arch} network"
        return "no defence"

    def training(self) -> tuple[str, str]:
        """What determines the trained target (architecture and recipe), for telling arms apart."""
        return self.arch, json.dumps(dict(self.train), sort_keys=True, default=str)


def _text(record: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = record.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ReportError(f"{where}: {key!r} must be text; got {value!r}: {RERUN}")
    return value


def _parse(setting_id: str, record: Any, where: str) -> SettingInfo:
    if not isinstance(record, dict):
        raise ReportError(f"{where} must be an object (the setting); got {type(record).__name__}: {RERUN}")
    label = record.get("label")
    if label is not None and not isinstance(label, str):
        raise ReportError(f"{where}: 'label' must be text or null; got {label!r}: {RERUN}")
    train = record.get("train", {})
    if train is None:
        train = {}
    if not isinstance(train, dict):
        raise ReportError(f"{where}: 'train' must be an object (the training recipe); got {train!r}: {RERUN}")
    for key in (*_DP_FIELDS, "weight_decay", "label_smoothing"):
        value = train.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise ReportError(f"{where}: train.{key} must be a finite number or null; got {value!r}: {RERUN}")
    return SettingInfo(
        setting_id=setting_id,
        label=(label.strip() or None) if isinstance(label, str) else None,
        attack=_text(record, "attack", where, ""),
        arch=_text(record, "arch", where, ""),
        output_policy=_text(record, "output_policy", where, "full"),
        transport=_text(record, "transport", where, "local"),
        train=dict(train),
    )


def read_settings(path: Path) -> dict[str, SettingInfo]:
    """Parse ``settings.json`` (``{setting_id: setting}``); ``{}`` when the run has none (older runs).

    Unknown keys of a setting are ignored. Raises :class:`ReportError` naming the file and key when
    the file is not JSON, not an object of objects, or a label, policy or recipe value has the wrong type.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}): {RERUN}") from None
    if not isinstance(data, dict):
        raise ReportError(
            f"{path} must hold a JSON object of setting id -> setting; got {type(data).__name__}: {RERUN}"
        )
    return {str(sid): _parse(str(sid), rec, f"{path.name}, setting {sid!r}") for sid, rec in data.items()}
