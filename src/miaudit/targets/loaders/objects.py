"""A model object in memory as a :class:`LoadedModel`: a fitted scikit-learn classifier or a torch module.

:func:`wrap_model` is the public entry; :mod:`miaudit.targets.loaders.files` reads model files into objects and
hands them here. Torch modules are probed once on zero records for their number of classes and output kind.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miaudit.errors import ConfigError, TargetError
from miaudit.targets.base import BlackBox
from miaudit.targets.local import EstimatorTarget, OnnxTarget, TorchModuleTarget, check_input_shape
from miaudit.targets.outputs import check_output_kind, resolve_output_kind

__all__ = ["LoadRequest", "LoadedModel", "from_module", "from_object", "import_factory", "make_request", "wrap_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A user's model, loaded: the black box over it and what the audit needs to know about it.

    Attributes
    ----------
    target : BlackBox
        Counting black box over the model, taking flat records of shape (n_samples, n_features).
    family : {"sklearn", "torch", "onnx"}
    n_features, n_classes : int
    classes : tuple or None
        The model's class labels in output order (scikit-learn's ``classes_``); None means 0..n_classes-1.
    input_shape : tuple of int or None
        What one record is reshaped to before the model sees it (None: the flat record).
    estimator : object
        The fitted scikit-learn estimator (None for other families).
    module_factory : callable or None
        For torch: builds an untrained module of the same architecture (from ``factory``); None if unknown.
    output_kind : {"probabilities", "logits"}
        What the model outputs, as given or as detected on a probe batch of zero records at load time
        (scikit-learn: "probabilities" from predict_proba, "logits" for decision_function scores).
    description : str
        One line, e.g. "RandomForestClassifier(n_estimators=100) from model.skops".
    """

    target: BlackBox
    family: str
    n_features: int
    n_classes: int
    classes: tuple[Any, ...] | None
    input_shape: tuple[int, ...] | None
    estimator: Any = None
    module_factory: Callable[[], Any] | None = None
    output_kind: str = "probabilities"
    description: str = ""


@dataclass(frozen=True)
class LoadRequest:
    """What the caller said about the model (validated once)."""

    n_features: int | None
    input_shape: tuple[int, ...] | None
    output_kind: str
    factory: str | None
    allow_unsafe_pickle: bool
    n_classes: int | None
    trusted: tuple[str, ...] = field(default=())


def wrap_model(
    model: Any,
    *,
    n_features: int | None = None,
    input_shape: Sequence[int] | None = None,
    output_kind: str = "auto",
    factory: str | None = None,
    n_classes: int | None = None,
) -> LoadedModel:
    """A :class:`LoadedModel` over a model already in memory: a fitted scikit-learn classifier or a torch module.

    The parameters mean what they mean in :func:`load_model`.
    """
    req = make_request(n_features, input_shape, output_kind, factory, False, n_classes, ())
    return from_object(model, req, origin="memory", factory_fn=factory_of(req))


def make_request(
    n_features: int | None,
    input_shape: Sequence[int] | None,
    output_kind: str,
    factory: str | None,
    allow_unsafe_pickle: bool,
    n_classes: int | None,
    trusted: Sequence[str],
) -> LoadRequest:
    """Validate what the caller said once: output kind, positive counts, input_shape against n_features."""
    check_output_kind(output_kind)
    for name, value in (("n_features", n_features), ("n_classes", n_classes)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    shape = None
    if input_shape is not None:
        shape = check_input_shape(input_shape, n_features=n_features or math.prod(int(s) for s in input_shape))
    if isinstance(trusted, str):
        trusted = (trusted,)
    return LoadRequest(n_features, shape, output_kind, factory, bool(allow_unsafe_pickle), n_classes, tuple(trusted))


# ------------------------------------------------------------------------------------------- scikit-learn
def short_repr(obj: Any, limit: int = 120) -> str:
    """``repr(obj)`` on one line, cut at ``limit`` characters (scikit-learn shows changed parameters only)."""
    text = re.sub(r"\s+", " ", repr(obj)).replace("( ", "(")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_estimator(est: Any, req: LoadRequest, origin: str) -> LoadedModel:
    """A LoadedModel over a fitted scikit-learn classifier (``origin`` names where it came from)."""
    name = f"{type(est).__name__} from {origin}"
    target = EstimatorTarget(est, n_features=req.n_features, name=name)
    if req.input_shape is not None:
        check_input_shape(req.input_shape, n_features=target.n_features)
    check_classes(target.n_classes, req, name)
    description = f"{short_repr(est)} from {origin}"
    if target.output_kind_ == "logits":
        how = "a sigmoid" if target.n_classes == 2 else "a softmax"
        description += f" (no predict_proba: decision_function scores turned into probabilities by {how})"
    if req.output_kind not in ("auto", target.output_kind_):
        logger.warning("%s: output_kind %r ignored; the estimator gives %s", name, req.output_kind, target.output_kind_)
    return LoadedModel(
        target=target,
        family="sklearn",
        n_features=target.n_features,
        n_classes=target.n_classes,
        classes=target.classes,
        input_shape=None,
        estimator=est,
        output_kind=target.output_kind_,
        description=description,
    )


def check_classes(found: int, req: LoadRequest, name: str) -> None:
    """ConfigError if the caller expected another number of classes than the model has."""
    if req.n_classes is not None and found != req.n_classes:
        raise ConfigError(f"{name} outputs {found} classes but n_classes={req.n_classes}; check the model or the data")


def from_object(obj: Any, req: LoadRequest, *, origin: str, factory_fn: Callable[[], Any] | None) -> LoadedModel:
    """A LoadedModel over a torch module or a scikit-learn classifier; ConfigError for anything else."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return from_module(obj, req, origin=origin, factory_fn=factory_fn)
    if hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"):
        return from_estimator(obj, req, origin)
    raise ConfigError(
        f"{origin} holds a {type(obj).__name__}, which is not a classifier (no predict_proba or decision_function) "
        "nor a torch module"
    )


# ------------------------------------------------------------------------------------------------- torch
def import_factory(spec: str) -> Callable[[], Any]:
    """Import the callable named by ``"package.module:callable"`` (dotted attributes allowed after the colon).

    Raises ConfigError naming the module or attribute that is missing, or the error importing it raised.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"factory must look like 'package.module:callable'; got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import the factory's module {module_name!r}: no module {exc.name!r} on the path "
                f"(run from the folder that holds it or add it to PYTHONPATH; searched {sys.path[:3]} ...)"
            ) from exc
        raise ConfigError(f"the factory's module {module_name!r} needs {exc.name!r}, which is not installed") from exc
    except Exception as exc:
        raise ConfigError(
            f"importing the factory's module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"the factory's module {module_name!r} has no attribute {attr!r}; check the name after ':'"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"the factory {spec!r} is a {type(obj).__name__}, not a callable that builds a module")
    return obj


def factory_of(req: LoadRequest) -> Callable[[], Any] | None:
    """The imported factory of the request, or None if it names none."""
    return None if req.factory is None else import_factory(req.factory)


def build_module(factory_fn: Callable[[], Any], spec: str) -> Any:
    """Call the factory; ConfigError if it raises or returns something other than a torch module."""
    import torch

    try:
        module = factory_fn()
    except Exception as exc:
        raise ConfigError(
            f"the factory {spec!r} raised {type(exc).__name__}: {exc}; it must build the module with no arguments"
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"the factory {spec!r} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def first_linear_features(module: Any) -> int | None:
    """in_features of the module's first parameterised layer if it is a Linear layer, else None."""
    import torch

    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)):
            return int(sub.in_features) if isinstance(sub, torch.nn.Linear) else None
    return None


def from_module(
    module: Any,
    req: LoadRequest,
    *,
    origin: str,
    factory_fn: Callable[[], Any] | None,
    example_shape: tuple[int, ...] | None = None,
    fixed_batch: int | None = None,
    note: str = "",
) -> LoadedModel:
    """A LoadedModel over a torch module: shapes from the request, the example or the first Linear layer."""
    shape = req.input_shape or example_shape
    n_features = req.n_features or (math.prod(shape) if shape else None) or first_linear_features(module)
    if n_features is None:
        raise ConfigError(
            f"cannot tell how many features {origin} takes (its first layer is not Linear); pass input_shape "
            "(--input-shape, e.g. 1,28,28) or n_features"
        )
    if shape is not None:
        check_input_shape(shape, n_features=n_features)
    if example_shape is not None and req.input_shape is not None and math.prod(example_shape) != n_features:
        raise ConfigError(f"{origin} was exported for records of shape {example_shape}, not {req.input_shape}")
    name = f"{type(module).__name__} from {origin}"
    target = TorchModuleTarget(
        module,
        n_features=n_features,
        n_classes=req.n_classes or 1,
        output_kind=req.output_kind,
        input_shape=shape if shape and len(shape) > 1 else None,
        fixed_batch_size=fixed_batch,
        name=name,
    )
    return finish(target, req, family="torch", origin=origin, factory_fn=factory_fn, description=name + note)


def finish(
    target: TorchModuleTarget | OnnxTarget,
    req: LoadRequest,
    *,
    family: str,
    origin: str,
    factory_fn: Callable[[], Any] | None,
    description: str,
) -> LoadedModel:
    """Probe the model on zero records: its number of classes and (for "auto") its output kind."""
    try:
        raw = target.raw_outputs(np.zeros((2, target.n_features), dtype=np.float32))
    except TargetError as exc:  # the model failed on the probe: most likely the shape
        raise ConfigError(
            f"{exc} (a probe of zero records of shape {target.input_shape or (target.n_features,)}); "
            "check input_shape / n_features"
        ) from exc
    n_classes = int(raw.shape[1])
    check_classes(n_classes, req, target.name)
    if n_classes < 2:
        raise ConfigError(f"{target.name} outputs {n_classes} value per record; a classifier needs one per class")
    target.n_classes = n_classes
    kind = target.output_kind_ or resolve_output_kind(req.output_kind, raw, name=target.name)
    target.output_kind_ = kind
    return LoadedModel(
        target=target,
        family=family,
        n_features=target.n_features,
        n_classes=n_classes,
        classes=None,
        input_shape=target.input_shape,
        module_factory=factory_fn,
        output_kind=kind,
        description=f"{description} (outputs {kind}{', detected' if req.output_kind == 'auto' else ''})",
    )
