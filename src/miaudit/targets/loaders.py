"""Load a user's model from a file as a counting black box, without running code from the file.

Accepted files (by suffix):

``.skops``
    A scikit-learn estimator saved with ``skops.io.dump``; types outside skops' trusted set are refused
    unless named in ``trusted`` (``--trust TYPE``).
``.onnx``
    Run by onnxruntime; the input's name, shape and batch dimension (dynamic, or fixed: then queries go in
    chunks of it) come from the model.
``.pt2``
    A ``torch.export.save`` archive. The archive is checked first: one with pickled parts (legacy weights,
    custom objects, pickled example inputs) is refused, because ``torch.export.load`` would unpickle them.
``.safetensors``, ``.pt``, ``.pth``
    Weights only (a state dict; ``.pt`` files are read with ``torch.load(weights_only=True)``), plus
    ``factory="package.module:callable"``, a function of the user's own code that builds the untrained module.
``.pkl``, ``.pickle``, ``.joblib`` (and ``.pt`` files holding whole pickled modules)
    Refused: unpickling runs arbitrary code from the file. ``allow_unsafe_pickle=True`` loads them anyway
    (only for files one made oneself).

Records are flat, of shape (n_samples, n_features); torch and ONNX models get them reshaped to ``input_shape``.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, DataError, MiauditError
from miaudit.targets.base import BlackBox
from miaudit.targets.local import EstimatorTarget, OnnxTarget, TorchModuleTarget, check_input_shape
from miaudit.targets.outputs import check_output_kind, resolve_output_kind

__all__ = ["MODEL_SUFFIXES", "PICKLE_SUFFIXES", "LoadedModel", "import_factory", "load_model", "wrap_model"]

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_CONVERT = (
    "convert it where it was made: skops.io.dump(model, 'model.skops') for scikit-learn, torch.export.save or "
    "safetensors.torch.save_file(module.state_dict(), ...) plus --factory for torch, or ONNX"
)


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
class _Request:
    """What the caller said about the model (validated once)."""

    n_features: int | None
    input_shape: tuple[int, ...] | None
    output_kind: str
    factory: str | None
    allow_unsafe_pickle: bool
    n_classes: int | None
    trusted: tuple[str, ...] = field(default=())


def load_model(
    source: str | Path,
    *,
    n_features: int | None = None,
    input_shape: Sequence[int] | None = None,
    output_kind: str = "auto",
    factory: str | None = None,
    allow_unsafe_pickle: bool = False,
    n_classes: int | None = None,
    trusted: Sequence[str] = (),
) -> LoadedModel:
    """Load a model file (see the module docstring for the formats) as a :class:`LoadedModel`.

    Parameters
    ----------
    source : str or Path
        The model file; its suffix chooses the loader.
    n_features : int, optional
        Features per record; checked against the model where it knows (scikit-learn, a first Linear layer,
        ONNX and exported input shapes), needed where it does not.
    input_shape : sequence of int, optional
        The shape of one record as a torch or ONNX model takes it, e.g. (1, 28, 28); taken from the model where
        it says (ONNX, .pt2 example inputs).
    output_kind : {"auto", "probabilities", "logits"}
        What a torch or ONNX model outputs; "auto" decides on a probe batch of zero records.
    factory : str, optional
        "package.module:callable" building the untrained torch module, for weight files.
    allow_unsafe_pickle : bool
        Load pickles (.pkl, .pickle, .joblib, whole-module .pt) although unpickling runs code from the file.
    n_classes : int, optional
        Expected number of classes; a model with another number is a ConfigError.
    trusted : sequence of str
        Types a .skops file may contain beyond skops' trusted defaults (as listed by the refusal).

    Raises
    ------
    ConfigError
        Missing file, unknown suffix, refused pickles or untrusted types, a missing or failing factory,
        mismatched weights, shapes or class counts.
    DataError
        A file that cannot be parsed in its format.
    """
    path = Path(source)
    req = _request(n_features, input_shape, output_kind, factory, allow_unsafe_pickle, n_classes, trusted)
    if not path.exists():
        raise ConfigError(f"no model file at {path}; give the path of a model file ({', '.join(MODEL_SUFFIXES)})")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the path of a model file ({', '.join(MODEL_SUFFIXES)})")
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ConfigError(
            f"cannot load {path.name}: unknown suffix {path.suffix!r}; the accepted ones are "
            f"{', '.join(MODEL_SUFFIXES)}"
        )
    loaded = loader(path, req)
    logger.info(
        "loaded %s (%s, %d features, %d classes)",
        loaded.description,
        loaded.family,
        loaded.n_features,
        loaded.n_classes,
    )
    return loaded


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
    req = _request(n_features, input_shape, output_kind, factory, False, n_classes, ())
    return _from_object(model, req, origin="memory", factory_fn=_factory_of(req))


def _request(
    n_features: int | None,
    input_shape: Sequence[int] | None,
    output_kind: str,
    factory: str | None,
    allow_unsafe_pickle: bool,
    n_classes: int | None,
    trusted: Sequence[str],
) -> _Request:
    check_output_kind(output_kind)
    for name, value in (("n_features", n_features), ("n_classes", n_classes)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    shape = None
    if input_shape is not None:
        shape = check_input_shape(input_shape, n_features=n_features or math.prod(int(s) for s in input_shape))
    if isinstance(trusted, str):
        trusted = (trusted,)
    return _Request(n_features, shape, output_kind, factory, bool(allow_unsafe_pickle), n_classes, tuple(trusted))


# ------------------------------------------------------------------------------------------- scikit-learn
def _short_repr(obj: Any, limit: int = 120) -> str:
    text = re.sub(r"\s+", " ", repr(obj)).replace("( ", "(")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _from_estimator(est: Any, req: _Request, origin: str) -> LoadedModel:
    name = f"{type(est).__name__} from {origin}"
    target = EstimatorTarget(est, n_features=req.n_features, name=name)
    if req.input_shape is not None:
        check_input_shape(req.input_shape, n_features=target.n_features)
    _check_classes(target.n_classes, req, name)
    description = f"{_short_repr(est)} from {origin}"
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


def _check_classes(found: int, req: _Request, name: str) -> None:
    if req.n_classes is not None and found != req.n_classes:
        raise ConfigError(f"{name} outputs {found} classes but n_classes={req.n_classes}; check the model or the data")


def _load_skops(path: Path, req: _Request) -> LoadedModel:
    sio = require_extra("skops.io", "audit")
    try:
        untrusted = list(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises zipfile, KeyError and JSON errors for files it cannot read
        raise DataError(
            f"{path}: not a readable skops file ({type(exc).__name__}: {exc}); save the model with skops.io.dump"
        ) from exc
    refused = [t for t in untrusted if t not in req.trusted]
    if refused:
        raise ConfigError(
            f"{path.name} contains types that skops does not trust by default: {', '.join(refused)}. If you trust "
            f"the file, name them: trusted=[...] in Python or --trust TYPE on the command line "
            f"({' '.join('--trust ' + t for t in refused)})"
        )
    try:
        est = sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise DataError(f"{path}: skops could not load the model ({type(exc).__name__}: {exc})") from exc
    return _from_object(est, req, origin=path.name, factory_fn=None)


def _load_pickle(path: Path, req: _Request) -> LoadedModel:
    if not req.allow_unsafe_pickle:
        raise ConfigError(
            f"{path.name} is a pickle, and unpickling runs arbitrary code stored in the file; {_CONVERT}. "
            "Only for a file you made yourself: allow_unsafe_pickle=True (--allow-unsafe-pickle)"
        )
    import joblib

    logger.warning("unpickling %s (allow_unsafe_pickle): this runs any code the file contains", path)
    try:
        obj = joblib.load(path)
    except Exception as exc:
        raise DataError(f"{path}: could not unpickle ({type(exc).__name__}: {exc})") from exc
    return _from_object(obj, req, origin=path.name, factory_fn=_factory_of(req))


def _from_object(obj: Any, req: _Request, *, origin: str, factory_fn: Callable[[], Any] | None) -> LoadedModel:
    import torch

    if isinstance(obj, torch.nn.Module):
        return _from_module(obj, req, origin=origin, factory_fn=factory_fn)
    if hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"):
        return _from_estimator(obj, req, origin)
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


def _factory_of(req: _Request) -> Callable[[], Any] | None:
    return None if req.factory is None else import_factory(req.factory)


def _build(factory_fn: Callable[[], Any], spec: str) -> Any:
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


def _load_weights_into(module: Any, state: dict[str, Any], path: Path, spec: str) -> None:
    """``module.load_state_dict(state, strict=True)``, with a ConfigError listing every mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"missing keys: {', '.join(missing)}"] if missing else []
        parts += [f"unexpected keys: {', '.join(unexpected)}"] if unexpected else []
        parts += [f"shapes (file vs module): {'; '.join(shapes)}"] if shapes else []
        raise ConfigError(
            f"the weights in {path.name} do not fit the module built by {spec}: {' | '.join(parts)}; "
            "the factory must build the architecture the weights were saved from"
        )
    module.load_state_dict(state, strict=True)


def _first_linear_features(module: Any) -> int | None:
    """in_features of the module's first parameterised layer if it is a Linear layer, else None."""
    import torch

    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)):
            return int(sub.in_features) if isinstance(sub, torch.nn.Linear) else None
    return None


def _from_module(
    module: Any,
    req: _Request,
    *,
    origin: str,
    factory_fn: Callable[[], Any] | None,
    example_shape: tuple[int, ...] | None = None,
    fixed_batch: int | None = None,
    note: str = "",
) -> LoadedModel:
    """A LoadedModel over a torch module: shapes from the request, the example or the first Linear layer."""
    shape = req.input_shape or example_shape
    n_features = req.n_features or (math.prod(shape) if shape else None) or _first_linear_features(module)
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
    return _finish(target, req, family="torch", origin=origin, factory_fn=factory_fn, description=name + note)


def _finish(
    target: TorchModuleTarget | OnnxTarget,
    req: _Request,
    *,
    family: str,
    origin: str,
    factory_fn: Callable[[], Any] | None,
    description: str,
) -> LoadedModel:
    """Probe the model on zero records: its number of classes and (for "auto") its output kind."""
    try:
        raw = target.raw_outputs(np.zeros((2, target.n_features), dtype=np.float32))
    except MiauditError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{target.name} failed on a probe batch of records of shape {target.input_shape or (target.n_features,)}: "
            f"{type(exc).__name__}: {exc}; check input_shape / n_features"
        ) from exc
    n_classes = int(raw.shape[1])
    _check_classes(n_classes, req, target.name)
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


def _load_state_dict_file(path: Path, req: _Request) -> LoadedModel:
    """.safetensors, and .pt/.pth files holding a state dict; a whole pickled module is refused."""
    import torch

    if path.suffix.lower() == ".safetensors":
        st = importlib.import_module("safetensors.torch")
        try:
            state = st.load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError
            raise DataError(
                f"{path}: not a readable safetensors file ({exc}); save it with safetensors.torch.save_file"
            ) from exc
    else:
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a file written by torch.save (not a zip archive); save it again")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle.UnpicklingError: it holds objects beyond tensors and containers
            if not req.allow_unsafe_pickle:
                raise ConfigError(
                    f"{path.name} holds pickled objects (a whole module?), and unpickling runs code from the file; "
                    f"{_CONVERT}. Only for a file you made yourself: allow_unsafe_pickle=True (--allow-unsafe-pickle)"
                ) from exc
            logger.warning("unpickling %s (allow_unsafe_pickle): this runs any code the file contains", path)
            obj = torch.load(path, map_location="cpu", weights_only=False)
            return _from_object(obj, req, origin=path.name, factory_fn=_factory_of(req))
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    if req.factory is None:
        raise ConfigError(
            f"{path.name} holds weights only; pass factory='package.module:callable' (--factory), a function "
            "that builds the untrained module, so the weights can be loaded into it"
        )
    factory_fn = import_factory(req.factory)
    module = _build(factory_fn, req.factory)
    _load_weights_into(module, state, path, req.factory)
    return _from_module(module, req, origin=path.name, factory_fn=factory_fn)


# ---------------------------------------------------------------------------------------------- torch.export
def _check_pt2_archive(path: Path) -> None:
    """Refuse a .pt2 archive whose loading would unpickle something (see the module docstring)."""
    import io

    import torch

    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a torch.export archive (not a zip file); save it with torch.export.save")
    pickled: list[str] = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if "/data/aotinductor/" in name or re.search(r"/data/(weights|constants)/[^/]+\.pt$", name):
                pickled.append(name)
            elif re.search(r"/data/(weights|constants)/[^/]+_config\.json$", name):
                config = json.loads(zf.read(name)).get("config", {})
                for key, meta in config.items():
                    path_name = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
                        pickled.append(f"{name}:{key}")
            elif "/data/sample_inputs/" in name:
                try:
                    torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                except Exception:
                    pickled.append(name)
    if pickled:
        raise ConfigError(
            f"{path.name} has parts that torch.export.load would unpickle ({', '.join(pickled[:5])}), which runs "
            "code from the file; export a plain module (tensors only) or save safetensors weights plus --factory"
        )


def _load_pt2(path: Path, req: _Request) -> LoadedModel:
    import torch

    _check_pt2_archive(path)
    try:
        program = torch.export.load(path)
    except Exception as exc:
        raise DataError(
            f"{path}: torch.export.load failed ({type(exc).__name__}: {exc}); export the model again"
        ) from exc
    example_shape, fixed_batch = None, None
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise ConfigError(f"{path.name} takes {len(user_inputs)} inputs; miaudit feeds one input of records")
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0] and "val" in node.meta:
            dims = tuple(node.meta["val"].shape)
            if all(isinstance(d, int) for d in dims[1:]) and len(dims) >= 2:
                example_shape = tuple(int(d) for d in dims[1:])
            if dims and isinstance(dims[0], int):
                fixed_batch = int(dims[0])
        if node.op == "call_function" and "dropout" in str(node.target) and True in node.args[1:]:
            logger.warning("%s: was exported in training mode (dropout active); export it after model.eval()", path)
    note = f", exported with a fixed batch of {fixed_batch}" if fixed_batch is not None else ""
    return _from_module(
        program.module(),
        req,
        origin=path.name,
        factory_fn=None,
        example_shape=example_shape,
        fixed_batch=fixed_batch,
        note=note,
    )


# ---------------------------------------------------------------------------------------------------- ONNX
def _load_onnx(path: Path, req: _Request) -> LoadedModel:
    ort = require_extra("onnxruntime", "audit")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, ...
        raise DataError(f"{path}: onnxruntime cannot read it as an ONNX model ({exc}); export the model again") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ConfigError(f"{path.name} takes {len(inputs)} inputs; miaudit feeds one input of records")
    dims = list(inputs[0].shape or [])
    declared = tuple(dims[1:])
    shape: tuple[int, ...] | None = None
    if declared and all(isinstance(d, int) and d > 0 for d in declared):
        shape = tuple(int(d) for d in declared)
        if req.input_shape is not None and math.prod(req.input_shape) != math.prod(shape):
            raise ConfigError(f"{path.name} takes records of shape {shape}, not input_shape {req.input_shape}")
    shape = req.input_shape or shape
    if shape is None and req.n_features is None:
        raise ConfigError(
            f"{path.name} declares its input as {dims}, with symbolic record dimensions; "
            "pass input_shape (--input-shape)"
        )
    n_features = req.n_features or math.prod(shape or ())
    name = f"ONNX model {path.name}"
    target = OnnxTarget(
        session,
        n_features=n_features,
        n_classes=req.n_classes or 1,
        output_kind=req.output_kind,
        input_shape=shape if shape is not None and len(shape) > 1 else None,
        name=name,
    )
    batch = "dynamic batch" if target.fixed_batch_size is None else f"fixed batch {target.fixed_batch_size}"
    return _finish(target, req, family="onnx", origin=path.name, factory_fn=None, description=f"{name} ({batch})")


_LOADERS: dict[str, Callable[[Path, _Request], LoadedModel]] = {
    ".skops": _load_skops,
    ".onnx": _load_onnx,
    ".pt2": _load_pt2,
    ".safetensors": _load_state_dict_file,
    ".pt": _load_state_dict_file,
    ".pth": _load_state_dict_file,
    **dict.fromkeys(PICKLE_SUFFIXES, _load_pickle),
}
#: every suffix :func:`load_model` accepts
MODEL_SUFFIXES: tuple[str, ...] = tuple(_LOADERS)
