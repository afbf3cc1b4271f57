"""Targets that live in this process: our own trained MLPs, scikit-learn estimators, torch modules, ONNX models.

Every target takes flat records of shape (n_samples, n_features). Torch and ONNX targets reshape them to the
model's ``input_shape`` (e.g. (1, 28, 28)) and turn the model's outputs into probabilities according to their
output kind (:mod:`miaudit.targets.outputs`): with ``"auto"`` the kind is decided on the first batch the model
sees and recorded in ``output_kind_``, so a module that ends in a softmax is not softmaxed twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from miaudit.errors import ConfigError, TargetError
from miaudit.targets.base import BlackBox
from miaudit.targets.outputs import check_output_kind, resolve_output_kind, softmax, to_probabilities
from miaudit.training.networks import MLPParams

__all__ = ["EstimatorTarget", "LocalTarget", "OnnxTarget", "TorchModuleTarget", "as_target"]

logger = logging.getLogger(__name__)

#: records per forward pass of a torch or ONNX model whose batch dimension is dynamic
CHUNK_SIZE = 4096


class LocalTarget(BlackBox):
    """A model trained by miaudit (:class:`MLPParams`), seen only through ``predict_proba``.

    For a scikit-learn estimator, a torch module or an ONNX session use :func:`as_target` (or
    :class:`EstimatorTarget`, :class:`TorchModuleTarget`, :class:`OnnxTarget`).
    """

    def __init__(self, model: MLPParams) -> None:
        if not isinstance(model, MLPParams):
            raise ConfigError(
                f"LocalTarget takes a model trained by miaudit (MLPParams); got {type(model).__name__}: "
                f"use as_target(model) or {_wrapper_for(model)}"
            )
        super().__init__(n_features=model.spec.n_features, n_classes=model.spec.n_classes)
        self._model = model

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(X)


def _wrapper_for(obj: Any) -> str:
    """The target class that wraps ``obj``, for error messages."""
    if _is_torch_module(obj):
        return "TorchModuleTarget(module, n_features=..., n_classes=...)"
    if type(obj).__module__.startswith("onnxruntime"):
        return "OnnxTarget(session)"
    if hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"):
        return "EstimatorTarget"
    return "a BlackBox subclass with _predict_proba(X)"


def _is_torch_module(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def _sigmoid_pair(d: np.ndarray) -> np.ndarray:
    """ndarray of shape (n_samples, 2): [1 - sigmoid(d), sigmoid(d)] for binary decision scores d."""
    p = np.exp(-np.logaddexp(0.0, -np.asarray(d, dtype=np.float64)))
    return np.stack([1.0 - p, p], axis=1)


class EstimatorTarget(BlackBox):
    """A fitted scikit-learn classifier.

    Uses ``predict_proba`` when the estimator has it (``output_kind_ = "probabilities"``), otherwise its
    ``decision_function`` scores turned into probabilities by a sigmoid (two classes) or a softmax
    (``output_kind_ = "logits"``). ``classes`` are the estimator's ``classes_`` in output order.
    """

    def __init__(self, estimator: Any, *, n_features: int | None = None, name: str | None = None) -> None:
        has_proba = hasattr(estimator, "predict_proba")
        if not has_proba and not hasattr(estimator, "decision_function"):
            raise ConfigError(
                f"{type(estimator).__name__} has neither predict_proba nor decision_function; "
                "wrap a probabilistic classifier or one with decision scores"
            )
        from sklearn.exceptions import NotFittedError as SklearnNotFitted
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(estimator)
        except SklearnNotFitted as exc:
            raise ConfigError(f"{type(estimator).__name__} is not fitted; fit it before auditing") from exc
        except TypeError as exc:  # not an estimator in scikit-learn's sense
            raise ConfigError(f"{type(estimator).__name__} is not a scikit-learn estimator ({exc})") from exc
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ConfigError(f"{type(estimator).__name__} has no classes_; wrap a fitted classifier")
        fitted_features = getattr(estimator, "n_features_in_", None)
        if n_features is None:
            n_features = fitted_features
        if n_features is None:
            raise ConfigError(f"{type(estimator).__name__} does not know its number of features; pass n_features")
        if fitted_features is not None and int(fitted_features) != int(n_features):
            raise ConfigError(
                f"{type(estimator).__name__} was fitted on {fitted_features} features but n_features={n_features}"
            )
        super().__init__(n_features=int(n_features), n_classes=len(classes), name=name or type(estimator).__name__)
        self._estimator = estimator
        self.classes = tuple(np.asarray(classes).tolist())
        self.output_kind_: Literal["probabilities", "logits"] = "probabilities" if has_proba else "logits"

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.output_kind_ == "probabilities":
            return self._estimator.predict_proba(X)
        d = np.asarray(self._estimator.decision_function(X), dtype=np.float64)
        if d.ndim == 1 or (d.ndim == 2 and d.shape[1] == 1 and self.n_classes == 2):
            return _sigmoid_pair(d.reshape(-1))
        return softmax(d)


class _RawModelTarget(BlackBox):
    """Shared by torch and ONNX targets: reshaping, chunking, padding and the output kind."""

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int,
        output_kind: str,
        input_shape: Sequence[int] | None,
        fixed_batch_size: int | None,
        name: str | None,
    ) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes, name=name)
        self.output_kind = check_output_kind(output_kind)
        self.output_kind_: Literal["probabilities", "logits"] | None = None  # decided on the first batch
        self.input_shape = check_input_shape(input_shape, n_features=n_features)
        if fixed_batch_size is not None and fixed_batch_size < 1:
            raise ConfigError(f"fixed_batch_size must be a positive integer; got {fixed_batch_size}")
        self.fixed_batch_size = fixed_batch_size

    def _forward(self, X: np.ndarray) -> np.ndarray:
        """The model's raw outputs on one chunk of reshaped records: ndarray of shape (n, n_classes)."""
        raise NotImplementedError

    def raw_outputs(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes), float64: the model's raw outputs (not counted as queries).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        """
        X = np.asarray(X)
        shape = (len(X), *self.input_shape) if self.input_shape else X.shape
        X = X.reshape(shape)
        step = self.fixed_batch_size or CHUNK_SIZE
        parts = []
        for start in range(0, len(X), step):
            chunk = X[start : start + step]
            n = len(chunk)
            if self.fixed_batch_size and n < self.fixed_batch_size:  # the model takes only full batches: pad
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch_size - n, *chunk.shape[1:]), chunk.dtype)])
            out = np.asarray(self._forward(chunk), dtype=np.float64)
            if out.ndim != 2 or len(out) != len(chunk):
                raise TargetError(
                    f"{self.name}: the model answered outputs of shape {out.shape} for {len(chunk)} records; "
                    "expected (n_samples, n_classes)"
                )
            parts.append(out[:n])
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes))

    def resolve_output_kind(self, X: np.ndarray) -> Literal["probabilities", "logits"]:
        """Decide the output kind on records ``X`` (if not decided yet) and return it; no query is counted."""
        if self.output_kind_ is None:
            self.output_kind_ = resolve_output_kind(self.output_kind, self.raw_outputs(X), name=self.name)
        return self.output_kind_

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = self.raw_outputs(X)
        if self.output_kind_ is None:
            self.output_kind_ = resolve_output_kind(self.output_kind, raw, name=self.name)
        return to_probabilities(raw, self.output_kind_)


def check_input_shape(input_shape: Sequence[int] | None, *, n_features: int) -> tuple[int, ...] | None:
    """``input_shape`` as a tuple, checked against ``n_features``; ConfigError if prod(shape) != n_features."""
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input_shape must be positive integers like (1, 28, 28); got {tuple(input_shape)}")
    if math.prod(shape) != n_features:
        raise ConfigError(
            f"input_shape {shape} holds {math.prod(shape)} values but the records have {n_features} features; "
            "the records are reshaped to input_shape, so the two must agree"
        )
    return shape


class TorchModuleTarget(_RawModelTarget):
    """A torch module, in eval mode without gradients.

    Parameters
    ----------
    module : torch.nn.Module
        Takes a float tensor of shape (n, *input_shape) (or (n, n_features)) and returns (n, n_classes).
    n_features, n_classes : int
    output_kind : {"auto", "probabilities", "logits"}
        What the module outputs; "auto" decides on the first batch (``output_kind_`` records it).
    input_shape : sequence of int, optional
        The shape of one record as the module expects it, e.g. (1, 28, 28); prod must equal n_features.
    fixed_batch_size : int, optional
        For modules that take only batches of this size (an exported program with a static batch): records
        go in chunks of it, the last one padded.
    name : str, optional
        Names the model in errors.
    """

    def __init__(
        self,
        module: Any,
        *,
        n_features: int,
        n_classes: int,
        output_kind: str = "auto",
        input_shape: Sequence[int] | None = None,
        fixed_batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"TorchModuleTarget takes a torch.nn.Module; got {type(module).__name__}")
        super().__init__(
            n_features=n_features,
            n_classes=n_classes,
            output_kind=output_kind,
            input_shape=input_shape,
            fixed_batch_size=fixed_batch_size,
            name=name or type(module).__name__,
        )
        self._module = module
        first = next((p for p in module.parameters() if p.is_floating_point()), None)
        self._dtype = first.dtype if first is not None else torch.float32
        self._device = first.device if first is not None else torch.device("cpu")
        with contextlib.suppress(NotImplementedError):  # an exported program keeps the mode it was exported in
            module.eval()

    def _forward(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            try:
                out = self._module(torch.as_tensor(np.asarray(X), dtype=self._dtype, device=self._device))
            except Exception as exc:  # the user's module: shape errors, export guards, ...
                raise TargetError(
                    f"{self.name}: the module failed on a batch of shape {tuple(X.shape)}: {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(out, (tuple, list)) and len(out) == 1:
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise TargetError(f"{self.name}: the module returned {type(out).__name__}, not one tensor of outputs")
            return out.detach().to("cpu", torch.float64).numpy()


class OnnxTarget(_RawModelTarget):
    """An ONNX model run by onnxruntime; the session's first input takes the records, its first output answers.

    The input's name, element type and shape come from the session: a fixed batch dimension means chunks of
    that size (the last padded); other dimensions give ``input_shape`` unless it is given.
    """

    def __init__(
        self,
        session: Any,
        *,
        n_features: int,
        n_classes: int,
        output_kind: str = "auto",
        input_shape: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ConfigError(
                f"{name or 'the ONNX model'} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                "miaudit feeds one input of records"
            )
        self._input = inputs[0].name
        self._np_dtype = np.float64 if inputs[0].type == "tensor(double)" else np.float32
        batch = inputs[0].shape[0] if inputs[0].shape else None
        super().__init__(
            n_features=n_features,
            n_classes=n_classes,
            output_kind=output_kind,
            input_shape=input_shape,
            fixed_batch_size=batch if isinstance(batch, int) and batch > 0 else None,
            name=name or "ONNX model",
        )
        self._session = session

    def _forward(self, X: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run(None, {self._input: np.ascontiguousarray(X, dtype=self._np_dtype)})[0]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument classes
            raise TargetError(f"{self.name}: onnxruntime failed on a batch of shape {X.shape}: {exc}") from exc
        return np.asarray(out)


def as_target(
    obj: Any,
    *,
    n_features: int | None = None,
    n_classes: int | None = None,
    output_kind: str = "auto",
    input_shape: Sequence[int] | None = None,
) -> BlackBox:
    """Wrap a model as a counting black box (targets pass through unchanged).

    Accepts a :class:`BlackBox`, a miaudit :class:`MLPParams`, a fitted scikit-learn classifier (with
    ``predict_proba`` or ``decision_function``), a torch module (needs ``n_classes``, and ``n_features`` or
    ``input_shape``) or an onnxruntime ``InferenceSession``. To load a model from a file use
    :func:`miaudit.targets.loaders.load_model`.
    """
    if isinstance(obj, BlackBox):
        return obj
    if isinstance(obj, MLPParams):
        return LocalTarget(obj)
    if _is_torch_module(obj):
        if n_features is None and input_shape is not None:
            n_features = math.prod(int(s) for s in input_shape)
        if n_features is None or n_classes is None:
            raise ConfigError("wrapping a torch module needs n_classes, and n_features or input_shape")
        return TorchModuleTarget(
            obj, n_features=n_features, n_classes=n_classes, output_kind=output_kind, input_shape=input_shape
        )
    if type(obj).__module__.startswith("onnxruntime") and hasattr(obj, "get_inputs"):
        if n_features is None or n_classes is None:
            raise ConfigError("wrapping an ONNX session needs n_features and n_classes; or use load_model(path)")
        return OnnxTarget(obj, n_features=n_features, n_classes=n_classes, output_kind=output_kind)
    if hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"):
        return EstimatorTarget(obj, n_features=n_features)
    raise ConfigError(
        f"cannot use {type(obj).__name__} as a target: it needs a predict_proba(X) method "
        "(a fitted scikit-learn classifier, a torch module, an ONNX session or a BlackBox); "
        "load model files with miaudit.targets.loaders.load_model"
    )
