"""Black-box targets: the only view of a model that attacks get.

Wrap a model in memory with :func:`as_target`; load one from a file with :func:`load_model`; read stored
per-record outputs (no model) with :func:`load_outputs`.
"""

from miaudit.targets.base import (
    ANSWER_KINDS,
    AnswerKind,
    AnswerProfile,
    BlackBox,
    Target,
    check_probabilities,
    describe_answers,
    profile_answers,
)
from miaudit.targets.loaders import MODEL_SUFFIXES, LoadedModel, import_factory, load_model, wrap_model
from miaudit.targets.local import EstimatorTarget, LocalTarget, OnnxTarget, TorchModuleTarget, as_target
from miaudit.targets.outputs import (
    OUTPUT_KINDS,
    OutputKind,
    RecordOutputs,
    detect_output_kind,
    load_outputs,
    softmax,
    to_probabilities,
)

__all__ = [
    "ANSWER_KINDS",
    "MODEL_SUFFIXES",
    "OUTPUT_KINDS",
    "AnswerKind",
    "AnswerProfile",
    "BlackBox",
    "EstimatorTarget",
    "LoadedModel",
    "LocalTarget",
    "OnnxTarget",
    "OutputKind",
    "RecordOutputs",
    "Target",
    "TorchModuleTarget",
    "as_target",
    "check_probabilities",
    "describe_answers",
    "detect_output_kind",
    "import_factory",
    "load_model",
    "load_outputs",
    "profile_answers",
    "softmax",
    "to_probabilities",
    "wrap_model",
]
