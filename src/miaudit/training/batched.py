"""The batched engine's public names, where they have always been importable from.

The engine itself lives in :mod:`miaudit.training.engine`, one concern per module (planning,
stacked path, fused one-hidden-layer path, inference, orchestration); this module re-exports its public API.
"""

from miaudit.training.engine import (
    DEFAULT_BUDGET_CAP,
    DEFAULT_BUDGET_FRACTION,
    MAX_CHUNK,
    ChunkJob,
    TrainedBatch,
    bytes_per_model,
    default_memory_budget,
    plan_chunks,
    predict_proba_stacked,
    train_batched,
    train_chunk,
    train_many,
)

__all__ = [
    "DEFAULT_BUDGET_CAP",
    "DEFAULT_BUDGET_FRACTION",
    "MAX_CHUNK",
    "ChunkJob",
    "TrainedBatch",
    "bytes_per_model",
    "default_memory_budget",
    "plan_chunks",
    "predict_proba_stacked",
    "train_batched",
    "train_chunk",
    "train_many",
]
