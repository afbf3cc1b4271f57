"""Shared pieces of the experiment layer's tests: tiny digits settings and a fresh cache per test."""

from __future__ import annotations

from pathlib import Path

from miaudit.studies.schema import RunSpec, Setting

TINY_CONFIGS = Path(__file__).parent / "configs_tiny"

#: a digits setting that trains in well under a second per model
TINY: dict = {
    "dataset": "digits",
    "target_size": 200,
    "shadow_train_size": 100,
    "shadow_test_size": 60,
    "n_shadows": 3,
    "train": {"epochs": 20},
}


def tiny(**fields) -> Setting:
    return Setting.model_validate({**TINY, **fields})


LOOP = RunSpec(engine="loop")
