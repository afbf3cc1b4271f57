"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <type code> <number of dimensions>``, one big-endian
``uint32`` per dimension, then the values in C order, big-endian. Files may be gzip-compressed; the
reader detects that from the gzip magic bytes, never from the file name.

Every problem is a :class:`~miaudit.errors.DataError` that names the file, what was expected, what
was found and how to replace the file.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from pathlib import Path

import numpy as np

from miaudit._io import atomic_write_bytes
from miaudit.errors import DataError

__all__ = [
    "DEFAULT_HINT",
    "IDX_TYPES",
    "is_gzip",
    "parse_idx",
    "read_decompressed",
    "read_idx",
    "write_idx",
]

logger = logging.getLogger(__name__)

#: The bytes every gzip stream starts with.
GZIP_MAGIC = b"\x1f\x8b"

#: IDX type code -> (big-endian numpy dtype, name used in messages).
IDX_TYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short (int16)"),
    0x0C: (np.dtype(">i4"), "int (int32)"),
    0x0D: (np.dtype(">f4"), "float (float32)"),
    0x0E: (np.dtype(">f8"), "double (float64)"),
}

#: How to repair a damaged file, appended to every error unless the caller passes its own ``hint``.
DEFAULT_HINT = (
    "The file is damaged or incomplete; replace it: delete it and run `miaudit data fetch`, "
    "or reinstall the Debian package dataset-fashion-mnist "
    "(apt-get install --reinstall dataset-fashion-mnist)."
)


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts with the gzip magic bytes ``1f 8b``."""
    return data[:2] == GZIP_MAGIC


def read_decompressed(path: str | Path, *, hint: str | None = None) -> bytes:
    """Return the contents of ``path``, gunzipped if it is a gzip stream.

    Parameters
    ----------
    path : str or Path
        The file to read. Compression is detected from the magic bytes, not the suffix.
    hint : str, optional
        How to fix a broken file; defaults to :data:`DEFAULT_HINT`.

    Returns
    -------
    bytes
        The decompressed contents.

    Raises
    ------
    DataError
        If the file cannot be read or is a corrupt gzip stream.
    """
    path = Path(path)
    hint = DEFAULT_HINT if hint is None else hint
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist. {hint}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc}). {hint}") from exc
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: corrupt gzip stream ({type(exc).__name__}: {exc}); {len(data)} compressed bytes on disk. {hint}"
        ) from exc


def parse_idx(data: bytes | memoryview, *, source: str = "<bytes>", hint: str | None = None) -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file.

    Parameters
    ----------
    data : bytes
        The whole file, header and payload, already decompressed.
    source : str, default="<bytes>"
        Name of the file, used in error messages.
    hint : str, optional
        How to fix a broken file; defaults to :data:`DEFAULT_HINT`.

    Returns
    -------
    ndarray of shape dims
        A writable array in native byte order with the dimensions from the header (for example
        ``(n_images, n_rows, n_cols)`` of dtype uint8 for image files).

    Raises
    ------
    DataError
        On a bad magic number, an unsupported type code, zero dimensions, a truncated header, a
        payload whose length differs from the product of the dimensions times the item size, or
        dimensions no array can have (a zero one beside huge ones).
    """
    hint = DEFAULT_HINT if hint is None else hint
    view = memoryview(data).cast("B")
    if len(view) < 4:
        raise DataError(f"{source}: only {len(view)} bytes, too short for an IDX header (4 bytes). {hint}")
    magic = bytes(view[:4])
    if magic[:2] != b"\x00\x00":
        raise DataError(
            f"{source}: bad IDX magic number 0x{magic.hex()}: the first two bytes must be zero; "
            f"this is not an IDX file. {hint}"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in IDX_TYPES:
        allowed = ", ".join(f"0x{code:02X} ({name})" for code, (_, name) in IDX_TYPES.items())
        raise DataError(
            f"{source}: bad IDX magic number 0x{magic.hex()}: unknown type code 0x{type_code:02X}; "
            f"allowed codes are {allowed}. {hint}"
        )
    if ndim == 0:
        raise DataError(f"{source}: bad IDX magic number 0x{magic.hex()}: zero dimensions. {hint}")
    header_len = 4 + 4 * ndim
    if len(view) < header_len:
        raise DataError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(view)}. {hint}"
        )
    dims = tuple(int(d) for d in np.frombuffer(view[4:header_len], dtype=">u4"))
    dtype, type_name = IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(view) - header_len
    if actual != expected:
        problem = "truncated IDX payload" if actual < expected else "trailing bytes after the IDX payload"
        raise DataError(
            f"{source}: {problem}: the header says dims {dims} of {type_name} = {expected} bytes, "
            f"but the file holds {actual} bytes after the {header_len}-byte header "
            f"({abs(actual - expected)} bytes {'missing' if actual < expected else 'too many'}). {hint}"
        )
    if math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise DataError(f"{source}: the header's dims {dims} describe an array too large for any machine. {hint}")
    array = np.frombuffer(view, dtype=dtype, count=math.prod(dims), offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path, *, hint: str | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw.

    Parameters
    ----------
    path : str or Path
        The file. Compression is detected from the gzip magic bytes, not the suffix.
    hint : str, optional
        How to fix a broken file, appended to error messages; defaults to :data:`DEFAULT_HINT`.

    Returns
    -------
    ndarray of shape dims
        For Fashion-MNIST images an ndarray of shape (n_images, 28, 28) and dtype uint8; for labels an
        ndarray of shape (n_images,).

    Raises
    ------
    DataError
        If the file is missing, unreadable, a corrupt gzip stream, or not a well-formed IDX file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_idx(Path(d) / "a.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    ...     read_idx(p).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    return parse_idx(read_decompressed(path, hint=hint), source=str(path), hint=hint)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` as an IDX file (atomically: temp file, then rename).

    Parameters
    ----------
    path : str or Path
        Destination file.
    array : ndarray
        1 to 255 dimensions; dtype uint8, int8, int16, int32, float32 or float64.
    compress : bool, default=True
        Gzip the file (with mtime 0, so the bytes are reproducible).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array has 0 or more than 255 dimensions, or a dimension does not fit in uint32.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, (dtype, _) in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        allowed = ", ".join(str(dtype.newbyteorder("=")) for dtype, _ in IDX_TYPES.values())
        raise TypeError(f"array dtype {array.dtype} has no IDX type code; convert it to one of {allowed}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions for IDX, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"array dimensions must be below 2**32 for IDX, got shape {array.shape}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    content = header + payload
    if compress:
        content = gzip.compress(content, mtime=0)
    atomic_write_bytes(path, content)
    logger.debug("wrote IDX %s: shape %s, dtype %s", path, array.shape, array.dtype)
    return path
