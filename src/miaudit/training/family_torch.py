"""Shadow and reference models of the target's own family: PyTorch modules.

:class:`TorchFamily` trains models built by a user's factory (``lambda: MyCNN()``) with the attacker's
recipe (a :class:`~miaudit.training.specs.TrainSpec`: Adam, learning rate, weight decay, epochs, batch size),
for the attacks' shadow, reference and pseudo-target models. Two engines give the same models:

``vmap``
    K models at once: their parameters stacked (``torch.func.stack_module_state``), one forward of all K
    under ``torch.vmap`` (each model its own minibatch), one masked Adam over the stacked parameters (Adam
    is elementwise, so this is K separate Adams). Short minibatches are padded with zero-weight rows and a
    model whose epoch has ended skips the remaining steps, so each model gets exactly the steps it would
    get alone.
``loop``
    One model at a time, a plain PyTorch loop with ``torch.optim.Adam``.

``auto`` uses vmap where the module allows it: a module with BatchNorm in training mode (its batch
statistics mix the padded rows in) or one that vmap cannot run (data-dependent control flow, in-place
updates of buffers) falls back to the loop, with a log line saying why.

Randomness: a model's seed (``torch_generator(seed, "train")``) draws its initialisation seed, the seed of
its other random operations and its minibatch order. PyTorch modules initialise (and apply dropout) from
the global generator, so the factory runs, and training runs, inside ``torch.random.fork_rng`` seeded from
those draws: global random state is left as it was. Without dropout the two engines give the same models
(up to float rounding). With dropout under vmap (``randomness="different"``) the masks come from one
stream per group of models trained together, so they differ from the loop engine's and depend on which
models share the call (still the same numbers for the same call). Training runs on the CPU with torch's
current thread settings.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.seeding import derive_seed, torch_generator
from miaudit.training.family import ProgressCallback, check_family_inputs, check_n_classes
from miaudit.training.hardware import flush_denormals

__all__ = ["OUTPUT_KINDS", "TORCH_ENGINES", "VMAP_CHUNK", "TorchFamily", "TorchModel"]

logger = logging.getLogger(__name__)

OUTPUT_KINDS = ("logits", "probabilities")
TORCH_ENGINES = ("auto", "vmap", "loop")
#: models trained together by one vmap call (memory grows with it: K minibatches' activations)
VMAP_CHUNK = 16
#: probabilities are clamped to this before the log of the NLL loss (output_kind="probabilities")
PROB_FLOOR = 1e-12
_PREDICT_CHUNK = 4096


def _row_losses(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-record loss, Tensor of shape (n,): cross-entropy of logits, or NLL of the clamped log-probabilities."""
    if kind == "logits":
        return F.cross_entropy(out, y, reduction="none")
    return F.nll_loss(torch.log(out.clamp_min(PROB_FLOOR)), y, reduction="none")


def _float_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


class TorchModel:
    """A trained module (in eval mode) answering ``predict_proba`` on flat records.

    Attributes
    ----------
    module : torch.nn.Module
    n_classes : int
    input_shape : tuple of int
        The shape one record is reshaped to before the module sees it.
    output_kind : {"logits", "probabilities"}
    """

    def __init__(self, module: nn.Module, *, n_classes: int, input_shape: tuple[int, ...], output_kind: str) -> None:
        self.module = module.eval()
        self.n_classes = n_classes
        self.input_shape = input_shape
        self.output_kind = output_kind

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of records X of shape (n_samples, n_features): ndarray of shape (n_samples, n_classes),
        float64 (a float64 softmax of the logits, or the module's own probabilities)."""
        X = np.asarray(X)
        dtype = _float_dtype(self.module)
        out = np.empty((len(X), self.n_classes), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(X), _PREDICT_CHUNK):
                xb = torch.as_tensor(np.ascontiguousarray(X[start : start + _PREDICT_CHUNK])).to(dtype)
                z = self.module(xb.reshape(len(xb), *self.input_shape))
                if tuple(z.shape) != (len(xb), self.n_classes):
                    raise DataError(
                        f"the module answered shape {tuple(z.shape)}; expected ({len(xb)}, {self.n_classes})"
                    )
                z = z.double()
                out[start : start + len(xb)] = (torch.softmax(z, dim=1) if self.output_kind == "logits" else z).numpy()
        return out


class TorchFamily:
    """Trains shadow/reference models built by a PyTorch module factory (a :class:`ModelTrainer`).

    Parameters
    ----------
    factory : callable returning torch.nn.Module
        Builds a fresh, untrained module; called once per model (under a seeded ``fork_rng``).
    n_classes : int
        Width of the module's output.
    input_shape : sequence of int, optional
        The shape of one record as the module takes it (``(1, 8, 8)`` for a CNN on 8x8 images); flat
        records of shape (n_features,) are reshaped to it. Default: flat.
    output_kind : {"logits", "probabilities"}
        What the module returns; with "probabilities" (it ends in a softmax) the loss is the NLL of the log
        of its output clamped at :data:`PROB_FLOOR`.
    engine : {"auto", "vmap", "loop"}
        See the module docstring; ``train.engine`` and ``train.precision`` (for the MLP engine) are ignored.

    Attributes
    ----------
    engine_used_ : {"vmap", "loop"} or None
        The engine the last call trained with ("auto" resolved); None before the first call.
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        *,
        n_classes: int,
        input_shape: Sequence[int] | None = None,
        output_kind: str = "logits",
        engine: str = "auto",
    ) -> None:
        if isinstance(factory, nn.Module) or not callable(factory):
            raise TypeError(
                "factory must be a callable returning a new torch.nn.Module (e.g. lambda: MyNet()), not a module; "
                f"got {type(factory).__name__}"
            )
        if input_shape is not None:
            shape = tuple(input_shape)
            if not shape or any(isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1 for d in shape):
                raise ConfigError(f"input_shape must be a sequence of positive integers; got {input_shape!r}")
            input_shape = tuple(int(d) for d in shape)
        if output_kind not in OUTPUT_KINDS:
            raise ConfigError(f"output_kind must be one of {', '.join(map(repr, OUTPUT_KINDS))}; got {output_kind!r}")
        if engine not in TORCH_ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(map(repr, TORCH_ENGINES))}; got {engine!r}")
        self.factory = factory
        self.n_classes = check_n_classes(n_classes)
        self.input_shape: tuple[int, ...] | None = input_shape
        self.output_kind = output_kind
        self.engine = engine
        self.engine_used_: str | None = None

    @property
    def key(self) -> str:
        """A stable description for cache keys: the factory's name, the module's structure and the options."""
        name = f"{getattr(self.factory, '__module__', '')}.{getattr(self.factory, '__qualname__', type(self.factory))}"
        module = _make_module(self.factory, 0)
        return (
            f"torch:{name}:{module!r}:n_classes={self.n_classes},input_shape={self.input_shape},"
            f"output_kind={self.output_kind},engine={self.engine}"
        )

    def __call__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        model: object = None,
        train: Any = None,
        progress: ProgressCallback | None = None,
    ) -> list[TorchModel]:
        """Train one module per training set with the recipe ``train``.

        Parameters
        ----------
        X : ndarray of shape (n_records, n_features)
        y : ndarray of shape (n_records,)
            Integer labels in [0, n_classes).
        train_sets : sequence of ndarray of shape (n_train_k,)
            Indices into X of each model's training set; sizes may differ.
        seeds : sequence of int
            One seed per model: initialisation, minibatch order, dropout.
        model : ignored
            The MLP architecture of the default trainer; the factory fixes the architecture here.
        train : TrainSpec
            Adam's ``lr`` and ``weight_decay``, ``epochs`` and ``batch_size``.
        progress : callable, optional
            ``progress(n_done, n_total)`` as models (vmap: groups of models) finish.

        Returns
        -------
        list of TorchModel, one per training set, in order.
        """
        if not all(hasattr(train, a) for a in ("lr", "weight_decay", "epochs", "batch_size")):
            raise ConfigError(
                f"TorchFamily needs the training recipe as train=TrainSpec(...); got {type(train).__name__}"
            )
        X, y, sets, seeds = check_family_inputs(X, y, train_sets, seeds, n_classes=self.n_classes)
        shape = self.input_shape or (X.shape[1],)
        if math.prod(shape) != X.shape[1]:
            raise DataError(
                f"input_shape {shape} holds {math.prod(shape)} values but records have {X.shape[1]} features; "
                "pass the shape one record has"
            )
        probe = _make_module(self.factory, 0)
        X_t = torch.as_tensor(np.ascontiguousarray(X)).to(_float_dtype(probe))
        y_t = torch.as_tensor(y)
        self._check_output(probe, X_t[:2].reshape(-1, *shape))
        engine = self.engine
        if engine != "loop":
            reason = _vmap_problem(self.factory, X_t[:2].reshape(-1, *shape))
            if reason is not None and engine == "vmap":
                raise ConfigError(f"this module cannot be trained with engine='vmap': {reason}; use 'loop' or 'auto'")
            if reason is not None:
                logger.info("training with the loop engine: vmap cannot run this module (%s)", reason)
            engine = "loop" if reason is not None else "vmap"
        self.engine_used_ = engine
        logger.info("training %d %s modules with the %s engine", len(sets), type(probe).__name__, engine)
        modules: list[nn.Module] = []
        chunk = VMAP_CHUNK if engine == "vmap" else 1
        for start in range(0, len(sets), chunk):
            part, part_seeds = sets[start : start + chunk], seeds[start : start + chunk]
            if engine == "vmap":
                modules.extend(
                    _train_vmap(
                        self.factory, X_t, y_t, part, part_seeds, shape=shape, kind=self.output_kind, train=train
                    )
                )
            else:
                modules.append(
                    _train_loop(
                        self.factory, X_t, y_t, part[0], part_seeds[0], shape=shape, kind=self.output_kind, train=train
                    )
                )
            if progress is not None:
                progress(len(modules), len(sets))
        return [
            TorchModel(m, n_classes=self.n_classes, input_shape=shape, output_kind=self.output_kind) for m in modules
        ]

    def _check_output(self, module: nn.Module, xb: torch.Tensor) -> None:
        with torch.no_grad():
            out = module.eval()(xb)  # eval: a BatchNorm takes even one record
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(xb), self.n_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"the factory's module answers {got} for {len(xb)} records; it must return one tensor of shape "
                f"(n_records, n_classes={self.n_classes}): check n_classes and input_shape"
            )


def _make_module(factory: Callable[[], nn.Module], init_seed: int) -> nn.Module:
    """Build a module from the factory with the global generator seeded in a fork (restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        module = factory()
    if not isinstance(module, nn.Module):
        raise TypeError(f"the factory must return a torch.nn.Module; it returned {type(module).__name__}")
    return module.to("cpu").train()


def _draw_seeds(gen: torch.Generator) -> tuple[int, int]:
    """A model's initialisation seed and the seed of its other random operations, from its generator."""
    a, b = torch.randint(0, 2**62, (2,), generator=gen).tolist()
    return int(a), int(b)


def _vmap_problem(factory: Callable[[], nn.Module], xb: torch.Tensor) -> str | None:
    """Why two of the factory's modules cannot train under vmap (None: they can)."""
    modules = [_make_module(factory, s) for s in (1, 2)]
    for name, sub in modules[0].named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            return f"{name or 'the module'} is a {type(sub).__name__}: its batch statistics mix records"
    try:
        params, buffers = torch.func.stack_module_state(modules)
        fwd = _stacked_forward(modules[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = fwd(params, buffers, torch.stack([xb, xb]))
            out.float().sum().backward()
    except Exception as e:  # any failure means: train with the loop
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def _stacked_forward(module: nn.Module) -> Callable[..., torch.Tensor]:
    base = copy.deepcopy(module).to("meta")

    def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, (params, buffers), (x,))

    return torch.vmap(forward, randomness="different")


@flush_denormals()  # Adam's moments decay into denormals; flushing them keeps epochs fast (restored after)
def _train_loop(
    factory: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    idx: np.ndarray,
    seed: int,
    *,
    shape: tuple[int, ...],
    kind: str,
    train: Any,
) -> nn.Module:
    """Train one module with a plain PyTorch loop."""
    gen = torch_generator(seed, "train")
    init_seed, rng_seed = _draw_seeds(gen)
    module = _make_module(factory, init_seed)
    opt = torch.optim.Adam(
        [p for p in module.parameters() if p.requires_grad], lr=train.lr, weight_decay=train.weight_decay
    )
    idx_t = torch.as_tensor(idx)
    n, bs = len(idx_t), train.batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng_seed)
        for epoch in range(train.epochs):
            order = idx_t[torch.randperm(n, generator=gen)]
            for start in range(0, n, bs):
                batch = order[start : start + bs]
                loss = _row_losses(module(X[batch].reshape(len(batch), *shape)), y[batch], kind).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower the learning rate"
                )
    return module.eval()


@flush_denormals()
def _train_vmap(
    factory: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    sets: list[np.ndarray],
    seeds: list[int],
    *,
    shape: tuple[int, ...],
    kind: str,
    train: Any,
) -> list[nn.Module]:
    """Train K modules together under vmap; model k gets exactly the Adam steps it would get alone."""
    K, bs = len(sets), train.batch_size
    gens = [torch_generator(s, "train") for s in seeds]
    draws = [_draw_seeds(g) for g in gens]
    modules = [_make_module(factory, d[0]) for d in draws]
    params, buffers = torch.func.stack_module_state(modules)
    names = [n for n, p in modules[0].named_parameters() if p.requires_grad]
    fixed = {n: p.detach() for n, p in params.items() if n not in names}
    fwd = _stacked_forward(modules[0])
    moments = {n: (torch.zeros_like(params[n]), torch.zeros_like(params[n])) for n in names}
    steps = torch.zeros(K, dtype=torch.float64)
    b1, b2 = 0.9, 0.999  # torch.optim.Adam's defaults, as in the loop engine
    idx_t = [torch.as_tensor(s) for s in sets]
    n_steps = [math.ceil(len(s) / bs) for s in sets]
    last_loss = torch.zeros(K)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(draws[0][1], "vmap", K))
        for epoch in range(train.epochs):
            orders = [s[torch.randperm(len(s), generator=g)] for s, g in zip(idx_t, gens, strict=True)]
            for step in range(max(n_steps)):
                rows = torch.zeros((K, bs), dtype=torch.int64)
                w = torch.zeros((K, bs), dtype=X.dtype)
                for k, order in enumerate(orders):
                    part = order[step * bs : (step + 1) * bs]
                    rows[k, : len(part)] = part
                    w[k, : len(part)] = 1
                count = w.sum(dim=1)
                active = count > 0
                out = fwd({**{n: params[n] for n in names}, **fixed}, buffers, X[rows].reshape(K, bs, *shape))
                terms = _row_losses(out.reshape(K * bs, -1), y[rows].reshape(-1), kind).reshape(K, bs)
                loss_k = (terms * w).sum(dim=1) / count.clamp_min(1)
                grads = torch.autograd.grad(loss_k.sum(), [params[n] for n in names])
                steps += active
                with torch.no_grad():
                    for n, g in zip(names, grads, strict=True):
                        _masked_adam(params[n], g, *moments[n], active, steps, b1=b1, b2=b2, train=train)
                last_loss = torch.where(active, loss_k.detach().float(), last_loss)
            bad = (~torch.isfinite(last_loss)).nonzero().flatten().tolist()
            if bad:
                raise TrainingError(
                    f"training diverged (loss {last_loss[bad[0]].item()}) for model {bad[0]} of this group at epoch "
                    f"{epoch + 1}; lower the learning rate"
                )
    with torch.no_grad():
        for k, module in enumerate(modules):
            for n, p in module.named_parameters():
                p.copy_(params[n][k])
            for n, b in module.named_buffers():
                b.copy_(buffers[n][k])
    return [m.eval() for m in modules]


def _masked_adam(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    active: torch.Tensor,
    steps: torch.Tensor,
    *,
    b1: float,
    b2: float,
    train: Any,
    eps: float = 1e-8,
) -> None:
    """One Adam step (torch.optim.Adam's arithmetic, L2 weight decay) of the active models' stacked tensors.

    ``p, g, m, v`` have shape (K, ...); ``active`` and ``steps`` (each model's step count) shape (K,).
    Inactive models keep their parameters and moments unchanged.
    """
    view = (-1,) + (1,) * (p.dim() - 1)
    a = active.view(view)
    if train.weight_decay:
        g = g + train.weight_decay * p
    m.copy_(torch.where(a, m.lerp(g, 1 - b1), m))
    v.copy_(torch.where(a, v * b2 + (1 - b2) * g * g, v))
    t = steps.clamp_min(1)
    step_size = (train.lr / (1 - b1**t)).to(p.dtype).view(view)
    bc2_sqrt = ((1 - b2**t) ** 0.5).to(p.dtype).view(view)
    update = step_size * m / (v.sqrt() / bc2_sqrt + eps)
    p.copy_(torch.where(a, p - update, p))
