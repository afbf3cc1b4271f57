"""Black-box targets: the only view of a model that attacks get."""

from miaudit.targets.base import BlackBox, Target, check_probabilities
from miaudit.targets.local import EstimatorTarget, LocalTarget, TorchModuleTarget, as_target

__all__ = [
    "BlackBox",
    "EstimatorTarget",
    "LocalTarget",
    "Target",
    "TorchModuleTarget",
    "as_target",
    "check_probabilities",
]
