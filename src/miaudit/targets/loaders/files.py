"""Model files: the suffix chooses a reader, which returns the model as an object without running code from the file.

See :mod:`miaudit.targets.loaders` for the accepted formats and what is refused.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, DataError
from miaudit.targets.loaders.objects import (
    LoadedModel,
    LoadRequest,
    build_module,
    factory_of,
    finish,
    from_module,
    from_object,
    import_factory,
    make_request,
)
from miaudit.targets.local import OnnxTarget

__all__ = ["MODEL_SUFFIXES", "PICKLE_SUFFIXES", "load_model"]

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_CONVERT = (
    "convert it where it was made: skops.io.dump(model, 'model.skops') for scikit-learn, torch.export.save or "
    "safetensors.torch.save_file(module.state_dict(), ...) plus --factory for torch, or ONNX"
)


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
    req = make_request(n_features, input_shape, output_kind, factory, allow_unsafe_pickle, n_classes, trusted)
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


def _load_skops(path: Path, req: LoadRequest) -> LoadedModel:
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
    return from_object(est, req, origin=path.name, factory_fn=None)


def _load_pickle(path: Path, req: LoadRequest) -> LoadedModel:
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
    return from_object(obj, req, origin=path.name, factory_fn=factory_of(req))


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


def _load_state_dict_file(path: Path, req: LoadRequest) -> LoadedModel:
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
            return from_object(obj, req, origin=path.name, factory_fn=factory_of(req))
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
    module = build_module(factory_fn, req.factory)
    _load_weights_into(module, state, path, req.factory)
    return from_module(module, req, origin=path.name, factory_fn=factory_fn)


# ---------------------------------------------------------------------------------------------- torch.export
def _check_pt2_archive(path: Path) -> None:
    """Refuse a .pt2 archive whose loading would unpickle something (see the module docstring)."""

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


def _load_pt2(path: Path, req: LoadRequest) -> LoadedModel:
    import torch

    _check_pt2_archive(path)
    try:
        program = torch.export.load(path)
    except Exception as exc:
        raise DataError(
            f"{path}: torch.export.load failed ({type(exc).__name__}: {exc}); export the model again"
        ) from exc
    example_shape, fixed_batch, training = None, None, False
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
        if node.op == "call_function" and "dropout" in str(node.target) and node.args[-1] is True:
            training = True
    if training:
        logger.warning("%s: was exported in training mode (dropout active); export it after model.eval()", path)
    note = f", exported with a fixed batch of {fixed_batch}" if fixed_batch is not None else ""
    return from_module(
        program.module(),
        req,
        origin=path.name,
        factory_fn=None,
        example_shape=example_shape,
        fixed_batch=fixed_batch,
        note=note,
    )


# ---------------------------------------------------------------------------------------------------- ONNX
def _load_onnx(path: Path, req: LoadRequest) -> LoadedModel:
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
    return finish(target, req, family="onnx", origin=path.name, factory_fn=None, description=f"{name} ({batch})")


_LOADERS: dict[str, Callable[[Path, LoadRequest], LoadedModel]] = {
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
