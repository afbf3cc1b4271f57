"""The one exception tree of miaudit.

::

    MiauditError                      base of everything raised on purpose
    ├── DataError (ValueError)        a dataset is missing, corrupt, too small or has the wrong shape
    │   └── ChecksumError             a file's sha256 differs from the official one
    ├── ConfigError (ValueError)      an option or config field has a value we do not accept
    ├── NotFittedError (RuntimeError) an attack or model was used before ``fit``
    ├── TargetError (RuntimeError)    the black-box target answered something unusable
    │   └── BudgetExhaustedError      the target's query budget is spent (answers so far are kept)
    └── TrainingError (RuntimeError)  training diverged or was asked something it cannot do

Every message names the problem and the fix.
"""

from __future__ import annotations

__all__ = [
    "BudgetExhaustedError",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "MiauditError",
    "NotFittedError",
    "TargetError",
    "TrainingError",
]


class MiauditError(Exception):
    """Base class of every error miaudit raises on purpose."""


class DataError(MiauditError, ValueError):
    """A dataset is missing, corrupt, too small for the request or has the wrong shape."""


class ChecksumError(DataError):
    """A data file's contents differ from the official ones."""


class ConfigError(MiauditError, ValueError):
    """An option or a configuration field has a value that is not allowed."""


class NotFittedError(MiauditError, RuntimeError):
    """An attack or model was used before it was fitted."""


class TargetError(MiauditError, RuntimeError):
    """The black-box target answered something unusable (wrong shape, NaN, not probabilities)."""


class TrainingError(MiauditError, RuntimeError):
    """Training failed (for example the loss became NaN) or was asked for something it cannot do."""


class BudgetExhaustedError(TargetError):
    """A query would exceed the target's query budget; the answers obtained so far are kept (cached)."""
