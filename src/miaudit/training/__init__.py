"""Training: model and recipe specs, the one training interface, the batched engine and executors."""

from __future__ import annotations

from miaudit.training.engine import TrainedBatch, predict_proba_stacked, train_batched, train_many
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.hardware import native_bf16, resolve_precision
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models, train_one

__all__ = [
    "Executor",
    "InProcessExecutor",
    "MLPParams",
    "ModelSpec",
    "TrainSpec",
    "TrainedBatch",
    "native_bf16",
    "predict_proba_stacked",
    "resolve_precision",
    "train_batched",
    "train_many",
    "train_models",
    "train_one",
]
