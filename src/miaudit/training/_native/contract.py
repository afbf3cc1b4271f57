"""How a compiled kernel's arguments are declared once, and checked before any pointer crosses into C.

A C function is declared as a :class:`Kernel`: its symbol and, in the order of the C prototype, one
:class:`Arg` per parameter: a 64-bit integer, a float, or a pointer to a tensor with its dtype and
its shape written as expressions in the kernel's size symbols (``("D // 2", "H", "2")``). A size
symbol is an integer parameter of the function (``D``) or a name the buffers define (``n_pool``:
the pool's row count, taken from the tensor that first uses it).

:meth:`Kernel.bind` checks every buffer once (a CPU tensor of the declared dtype and shape,
contiguous, not overlapping a buffer the kernel writes), checks the size rules (``multiple_of``)
and returns a :class:`BoundCall` holding the pointers; each call then passes only the per-call
scalars. A mismatch raises :class:`~miaudit.errors.TrainingError` naming the argument, what the
contract expects and what was given, instead of letting C read or write the wrong memory.

>>> import torch
>>> k = Kernel("scale", (i64("n", "values"), buf("x", torch.float32, ("n",), "data", writes=True)))
>>> k.check({"n": 3, "x": torch.zeros(3)})
{'n': 3}
>>> k.check({"n": 4, "x": torch.zeros(3)})  # doctest: +ELLIPSIS
Traceback (most recent call last):
miaudit.errors.TrainingError: scale: argument 'x' must be ... shape (n,) = (4,); got dtype torch.float32, shape (3,)...
"""

from __future__ import annotations

import ast
import ctypes
import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from miaudit.errors import TrainingError

__all__ = ["Arg", "BoundCall", "Kernel", "Library", "buf", "f32", "i64"]

Kind = Literal["i64", "f32", "ptr"]
_CTYPES: dict[str, Any] = {"i64": ctypes.c_int64, "f32": ctypes.c_float, "ptr": ctypes.c_void_p}
_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


@dataclass(frozen=True)
class Arg:
    """One parameter of a C function.

    Attributes
    ----------
    name : str
        As in the C prototype.
    kind : {"i64", "f32", "ptr"}
        ``int64_t``, ``float`` or a pointer to a buffer.
    doc : str
        What it holds.
    dtype : torch.dtype or None
        Of the buffer (``ptr`` only); ``torch.bfloat16`` is C's ``uint16_t``.
    shape : tuple of str
        The buffer's shape, one integer expression per dimension (``+ - * //`` over size symbols).
    optional : bool
        The pointer may be NULL (``None``).
    writes : bool
        The kernel writes the buffer (it must not overlap any other buffer of the call).
    """

    name: str
    kind: Kind
    doc: str
    dtype: torch.dtype | None = None
    shape: tuple[str, ...] = ()
    optional: bool = False
    writes: bool = False


def i64(name: str, doc: str) -> Arg:
    """An ``int64_t`` parameter (a size symbol when shapes name it)."""
    return Arg(name, "i64", doc)


def f32(name: str, doc: str) -> Arg:
    """A ``float`` parameter."""
    return Arg(name, "f32", doc)


def buf(
    name: str, dtype: torch.dtype, shape: tuple[str, ...], doc: str, *, optional: bool = False, writes: bool = False
) -> Arg:
    """A pointer to a contiguous buffer of ``dtype`` and ``shape``."""
    return Arg(name, "ptr", doc, dtype=dtype, shape=shape, optional=optional, writes=writes)


@functools.cache
def _parse(expr: str) -> ast.expr:
    node = ast.parse(expr, mode="eval").body
    for sub in ast.walk(node):
        ok = isinstance(sub, ast.Name | ast.BinOp | ast.Load) or type(sub) in _OPS
        ok = ok or (isinstance(sub, ast.Constant) and type(sub.value) is int)
        if not ok:
            raise ValueError(f"shape expression {expr!r} may only use names, integers and + - * //")
    return node


def _evaluate(node: ast.expr, sizes: Mapping[str, int]) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        return sizes[node.id]
    assert isinstance(node, ast.BinOp)  # _parse admits nothing else
    return _OPS[type(node.op)](_evaluate(node.left, sizes), _evaluate(node.right, sizes))


def shape_of(arg: Arg, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The shape ``arg`` declares, with the size symbols' values."""
    return tuple(_evaluate(_parse(e), sizes) for e in arg.shape)


@dataclass(frozen=True)
class Kernel:
    """A C function's contract: its symbol, parameters in prototype order and size rules.

    Attributes
    ----------
    symbol : str
        The exported C name.
    args : tuple of Arg
        In the order of the C prototype.
    multiple_of : tuple of (str, int)
        Size symbols that must be multiples of a number (tile widths, vector lanes).
    one_of : tuple of tuple of str
        Groups of optional pointers of which exactly one must be given.
    per_call : tuple of str
        Scalars passed at every call rather than at :meth:`bind`. A per-call integer that is also
        a size symbol (a step count) takes its bound from the buffers and may be anything up to it.
    returns : {"void", "int"}
    source : str
        The C file under ``_native/`` (its contract is the ``.py`` file of the same stem).
    """

    symbol: str
    args: tuple[Arg, ...]
    multiple_of: tuple[tuple[str, int], ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    per_call: tuple[str, ...] = ()
    returns: Literal["void", "int"] = "void"
    source: str = ""
    _by_name: dict[str, Arg] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {a.name: a for a in self.args})
        for a in self.args:
            for e in a.shape:
                _parse(e)
        unknown = set(self.per_call) - set(self._by_name)
        if unknown or len(self._by_name) != len(self.args):
            raise ValueError(f"{self.symbol}: per-call names {sorted(unknown)} or argument names are not unique")

    @property
    def contract_file(self) -> str:
        """Where this contract is written, for error messages."""
        return f"miaudit/training/_native/{self.source.removesuffix('.c') or '<kernel>'}.py"

    def arg(self, name: str) -> Arg:
        """The parameter called ``name``."""
        return self._by_name[name]

    def argtypes(self) -> list[Any]:
        """The ctypes argument types, in prototype order."""
        return [_CTYPES[a.kind] for a in self.args]

    def restype(self) -> Any:
        """The ctypes result type."""
        return ctypes.c_int if self.returns == "int" else None

    def allocate(self, names: Sequence[str], sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
        """Uninitialised buffers for the parameters ``names``, shaped and typed as declared."""
        out = {}
        for name in names:
            a = self.arg(name)
            assert a.dtype is not None, f"{name} is not a buffer"
            out[name] = torch.empty(shape_of(a, sizes), dtype=a.dtype)
        return out

    def check(self, values: Mapping[str, object]) -> dict[str, int]:
        """Check buffers and scalars against the contract; return the size symbols' values.

        Parameters
        ----------
        values : mapping of str to Tensor, int, float or None
            Every parameter except the per-call ones: tensors for buffers (None for a NULL
            pointer where allowed), numbers for scalars.

        Raises
        ------
        TrainingError
            Naming the first argument that differs from the contract, what it expects and what it got.
        """
        missing = [a.name for a in self.args if a.name not in values and a.name not in self.per_call]
        extra = sorted(set(values) - set(self._by_name))
        if missing or extra:
            raise TrainingError(
                f"{self.symbol}: missing arguments {missing}, unknown arguments {extra}; pass the arguments "
                f"{self.contract_file} declares"
            )
        sizes: dict[str, int] = {}
        for a in self.args:
            if a.kind != "ptr" and a.name in values:
                v = values[a.name]
                if a.kind == "i64" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise TrainingError(f"{self.symbol}: argument {a.name!r} must be a non-negative int; got {v!r}")
                if a.kind == "f32" and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise TrainingError(f"{self.symbol}: argument {a.name!r} must be a float; got {v!r}")
                if a.kind == "i64":
                    sizes[a.name] = int(v)  # type: ignore[call-overload]
        tensors: dict[str, torch.Tensor] = {}
        for a in self.args:
            if a.kind != "ptr":
                continue
            t = values[a.name]
            if t is None and a.optional:
                continue
            if not isinstance(t, torch.Tensor):
                raise TrainingError(f"{self.symbol}: argument {a.name!r} must be a tensor; got {type(t).__name__}")
            tensors[a.name] = t
            # names that only the buffers define take their value from the first buffer using them
            for expr, dim in zip(a.shape, t.shape, strict=False):
                if expr.isidentifier() and expr not in sizes:
                    sizes[expr] = int(dim)
        for group in self.one_of:
            given = [n for n in group if n in tensors]
            if len(given) != 1:
                raise TrainingError(f"{self.symbol}: give exactly one of {list(group)}; got {given or 'none'}")
        for name, m in self.multiple_of:
            if sizes[name] % m:
                raise TrainingError(f"{self.symbol}: {name} must be a multiple of {m}; got {sizes[name]}")
        for name, t in tensors.items():
            a = self._by_name[name]
            try:
                want: tuple[int, ...] | str = shape_of(a, sizes)
            except KeyError:  # a symbol only this buffer would define, and it has too few dimensions
                want = "?"
            if tuple(t.shape) != want or t.dtype != a.dtype or not t.is_contiguous() or t.device.type != "cpu":
                got = f"dtype {t.dtype}, shape {tuple(t.shape)}"
                if not t.is_contiguous():
                    got += ", not contiguous"
                if t.device.type != "cpu":
                    got += f", on {t.device}"
                exprs = ", ".join(a.shape) + ("," if len(a.shape) == 1 else "")
                raise TrainingError(
                    f"{self.symbol}: argument {name!r} must be a contiguous CPU tensor of dtype {a.dtype} and "
                    f"shape ({exprs}) = {want}; got {got}. Allocate it as {self.contract_file} declares"
                )
        _check_no_overlap(self, tensors)
        return sizes

    def bind(self, fn: Callable[..., Any], values: Mapping[str, object]) -> BoundCall:
        """Check ``values`` once (see :meth:`check`) and hold the pointers for calls of ``fn``."""
        sizes = self.check(values)
        args: list[Any] = []
        slots: list[tuple[str, int, int | None]] = []
        for pos, a in enumerate(self.args):
            if a.name in self.per_call:
                bound = sizes.get(a.name) if a.kind == "i64" else None
                slots.append((a.name, pos, bound))
                args.append(None)
            elif a.kind == "ptr":
                t = values[a.name]
                args.append(None if t is None else t.data_ptr())  # type: ignore[attr-defined]
            else:
                args.append(values[a.name])
        # keep the tensors alive as long as the call holds their pointers
        keep = tuple(v for v in values.values() if isinstance(v, torch.Tensor))
        return BoundCall(self, fn, args, tuple(slots), keep, sizes)


def _check_no_overlap(kernel: Kernel, tensors: Mapping[str, torch.Tensor]) -> None:
    spans = [(name, t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for name, t in tensors.items()]
    for i, (a, start_a, end_a) in enumerate(spans):
        for b, start_b, end_b in spans[i + 1 :]:
            if start_a < end_b and start_b < end_a and (kernel.arg(a).writes or kernel.arg(b).writes):
                raise TrainingError(
                    f"{kernel.symbol}: arguments {a!r} and {b!r} overlap in memory and the kernel writes one of "
                    "them; pass separate buffers"
                )


class BoundCall:
    """A kernel call with its buffers checked and their pointers fixed; call it with the per-call scalars.

    Holds references to the tensors, so their memory outlives the call object.
    """

    def __init__(
        self,
        kernel: Kernel,
        fn: Callable[..., Any],
        args: list[Any],
        slots: tuple[tuple[str, int, int | None], ...],
        keep: tuple[torch.Tensor, ...],
        sizes: dict[str, int],
    ) -> None:
        self.kernel, self.sizes = kernel, sizes
        self._fn, self._args, self._slots, self._keep = fn, args, slots, keep

    def __call__(self, **scalars: float) -> Any:
        """Run the kernel; ``scalars`` are exactly the kernel's per-call parameters."""
        args = list(self._args)
        if len(scalars) != len(self._slots):
            raise TrainingError(
                f"{self.kernel.symbol}: pass exactly the per-call arguments {list(self.kernel.per_call)}; "
                f"got {sorted(scalars)}"
            )
        for name, pos, bound in self._slots:
            v = scalars[name]
            if bound is not None and not (isinstance(v, int) and 0 <= v <= bound):
                raise TrainingError(f"{self.kernel.symbol}: {name} must be an int in 0..{bound} (the buffers); got {v}")
            args[pos] = v
        return self._fn(*args)


@dataclass(frozen=True)
class Library:
    """One C file's compiled library: the ABI number it reports and its kernels.

    Attributes
    ----------
    name : str
        The C file's stem under ``_native/``.
    abi_symbol : str
        A function returning :attr:`abi`; a library reporting another number is not loaded.
    abi : int
        Raised in the C source and here together whenever a prototype or layout changes.
    kernels : tuple of Kernel
    """

    name: str
    abi_symbol: str
    abi: int
    kernels: tuple[Kernel, ...]

    def open(self, path: str) -> ctypes.CDLL:
        """Load the library, check its ABI number and give every kernel its declared ctypes signature.

        Raises
        ------
        OSError
            The file does not load or reports another ABI number (the caller rebuilds it).
        """
        lib = ctypes.CDLL(path)
        abi = getattr(lib, self.abi_symbol)
        abi.argtypes, abi.restype = [], ctypes.c_int
        if abi() != self.abi:
            raise OSError(f"{path} reports ABI {abi()}, the contract expects {self.abi}")
        for k in self.kernels:
            fn = getattr(lib, k.symbol)
            fn.argtypes, fn.restype = k.argtypes(), k.restype()
        return lib
