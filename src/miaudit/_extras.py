"""Optional dependencies: which extra installs which module, and a one-line error when one is missing.

A feature that needs an optional package imports it through :func:`require_extra`, so a missing
package is a :class:`~miaudit.errors.ConfigError` naming the ``pip install`` command that fixes it,
which the command line prints as one line instead of a traceback.

>>> import math
>>> require_extra("math", "dp") is math
True
"""

from __future__ import annotations

import importlib
from types import ModuleType

from miaudit.errors import ConfigError

__all__ = ["EXTRAS", "MODULE_EXTRAS", "extra_for_module", "missing_extra_message", "require_extra"]

#: the extras of ``pyproject.toml`` that features import lazily, and the packages each installs
EXTRAS: dict[str, tuple[str, ...]] = {
    "dp": ("opacus",),
    "serve": ("fastapi", "uvicorn", "httpx"),
    "dask": ("dask", "distributed"),
    "audit": ("skops", "pyarrow", "onnxruntime"),
}
#: top-level module name -> the extra that installs it
MODULE_EXTRAS: dict[str, str] = {module: extra for extra, modules in EXTRAS.items() for module in modules}


def missing_extra_message(module: str, extra: str) -> str:
    """The one line that says which optional dependency is missing and how to install it.

    >>> missing_extra_message("opacus", "dp")
    "this needs the optional dependency opacus: pip install 'miaudit[dp]'"
    """
    return f"this needs the optional dependency {module}: pip install 'miaudit[{extra}]'"


def extra_for_module(name: str | None) -> str | None:
    """The extra that installs the module ``name`` (a dotted name counts by its top-level package), or None.

    >>> extra_for_module("dask.distributed"), extra_for_module("numpy")
    ('dask', None)
    """
    if not name:
        return None
    return MODULE_EXTRAS.get(name.partition(".")[0])


def require_extra(module: str, extra: str) -> ModuleType:
    """Import ``module``, which the extra ``extra`` installs; a one-line ConfigError when it is missing.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"opacus"`` or ``"dask.distributed"``.
    extra : str
        The extra of miaudit that installs it, one of :data:`EXTRAS` (``dp``, ``serve``, ``dask``, ``audit``).

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ConfigError
        If ``module`` (or a package it needs) is not installed: "this needs the optional dependency
        MODULE: pip install 'miaudit[EXTRA]'".
    ValueError
        If ``extra`` is not one of miaudit's extras (a mistake in the calling code).
    """
    if extra not in EXTRAS:
        raise ValueError(f"require_extra: unknown extra {extra!r}; miaudit's extras are {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise ConfigError(missing_extra_message(missing, extra)) from exc
