"""The engine's modules: one concern each, public names importable from where they always were."""

from __future__ import annotations

import importlib

import pytest

from miaudit import training
from miaudit.training import batched, engine


def test_public_names_are_the_engines_everywhere() -> None:
    assert set(batched.__all__) == set(engine.__all__)
    for name in engine.__all__:
        assert getattr(batched, name) is getattr(engine, name)
    for name in ("TrainedBatch", "predict_proba_stacked", "train_batched", "train_many"):
        assert getattr(training, name) is getattr(engine, name)
    assert batched.MAX_CHUNK == 16 and batched.DEFAULT_BUDGET_CAP == 16 * 2**30


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("planning", ["ChunkJob", "plan_chunks", "bytes_per_model", "BLOCK_STEPS"]),
        ("schedule", ["MinibatchStream"]),
        ("stack", ["Stack", "Layer", "layer_layout"]),
        ("stacked", ["train_stacked", "StepPlan"]),
        ("fused", ["train_fused", "fused_applies", "padded_width"]),
        ("inference", ["predict_proba_stacked"]),
        ("orchestration", ["train_batched", "train_many", "train_chunk", "TrainedBatch"]),
    ],
)
def test_each_concern_has_its_module(module: str, names: list[str]) -> None:
    mod = importlib.import_module(f"miaudit.training.engine.{module}")
    assert sorted(mod.__all__) == sorted(set(mod.__all__))
    for name in names:
        assert name in mod.__all__ and hasattr(mod, name)


def test_padded_width_rounds_features_and_ones_column_up_to_tiles() -> None:
    from miaudit.training.engine.fused import padded_width

    assert [padded_width(n) for n in (31, 32, 63, 64, 784)] == [32, 64, 64, 96, 800]
