"""Array-shaped records of a user's own data: NPZ arrays, IDX files and folders of images (one subfolder per class).

These readers return the raw parts of a table (:class:`Records`); :func:`miaudit.data.tables.read_table`
checks them and assembles the :class:`~miaudit.data.tables.Table`. Image pixel values are scaled to [0, 1]
(8-bit values divided by 255, 16-bit ones by 65535); NPZ values are kept as stored. Every record keeps its
shape in ``record_shape``, for example ``(28, 28)`` for grayscale or ``(32, 32, 3)`` for colour images.

Images are decoded with Pillow, which matplotlib (a dependency of miaudit) requires. A file Pillow cannot
decode is a :class:`~miaudit.errors.DataError` naming the file, never another exception. NPZ files are read
member by member without pickle, and each array's declared size is checked against the bytes that hold it
before anything is allocated.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.data.idx import read_idx
from miaudit.errors import ConfigError, DataError

__all__ = ["IMAGE_SUFFIXES", "Records", "is_idx_path", "read_idx_pair", "read_image_folder", "read_npz"]

logger = logging.getLogger(__name__)

#: File suffixes read as images inside an image folder (case is ignored); other files are skipped.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: How to fix an IDX file of one's own that does not parse.
IDX_HINT = (
    "Check that it is an IDX file: 4 magic bytes 00 00 <type> <ndim>, one big-endian uint32 per dimension, "
    "then the values (gzip-compressed or raw), as miaudit.data.write_idx writes it."
)

#: How to write an NPZ file that :func:`read_npz` accepts.
NPZ_HINT = "save your data with np.savez(path, X=features, y=labels, ids=record_ids) (ids are optional)"

# What zipfile and numpy's .npy header parser (tokenize, ast.literal_eval) raise on a damaged file; RuntimeError
# covers encrypted members, NotImplementedError (unknown compression) and RecursionError.
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    OverflowError,
    SyntaxError,
    tokenize.TokenError,
)

_IDX_NAME = re.compile(r"(\.idx\d*|[.-]idx\d+-ubyte|-ubyte)$")


@dataclass(frozen=True)
class Records:
    """The raw parts of image-shaped records, before the checks of :func:`~miaudit.data.tables.read_table`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        float32 pixel values in [0, 1], each record flattened in C order.
    labels : ndarray of shape (n_samples,)
        Raw labels: class folder names (str objects) or the values of an IDX labels file.
    ids : ndarray of shape (n_samples,) or None
        Record ids (an image's path relative to the folder, with ``/``; an NPZ file's ``ids``), or None
        for row numbers.
    record_shape : tuple of int or None
        The shape of one record, ``(height, width)`` or ``(height, width, 3)`` for images; None for
        records that are plain feature vectors.
    """

    X: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None
    record_shape: tuple[int, ...] | None


def _npz_array(zf: zipfile.ZipFile, member: str, path: Path) -> np.ndarray:
    """One array of an open .npz archive, its header checked before the payload is allocated."""
    fmt = np.lib.format
    info = zf.getinfo(member)
    with zf.open(info) as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        else:
            raise DataError(
                f"{path}: array {member} has .npy format version {version}, read are 1.0 and 2.0; {NPZ_HINT}"
            )
        header_len = f.tell()
    if dtype.hasobject:
        raise DataError(f"{path}: array {member} holds Python objects, which are not read (no pickle); {NPZ_HINT}")
    expected = math.prod(shape) * dtype.itemsize
    if dtype.itemsize == 0 or info.file_size - header_len != expected:
        raise DataError(
            f"{path}: array {member} declares shape {shape} of {dtype} ({expected} bytes) but holds "
            f"{info.file_size - header_len} bytes; the file is damaged: {NPZ_HINT}"
        )
    with zf.open(info) as f:
        return np.asarray(fmt.read_array(f, allow_pickle=False))


def read_npz(path: str | Path) -> Records:
    """Read arrays ``X``, ``y`` and optionally ``ids`` from a .npz file, without pickle.

    Parameters
    ----------
    path : str or Path
        ``X``: ndarray of shape (n_samples, n_features), or (n_samples, ...) which is flattened;
        ``y``: ndarray of shape (n_samples,); ``ids``: ndarray of shape (n_samples,), optional.

    Returns
    -------
    Records
        ``X`` as read (numeric dtypes only; checked and converted by ``read_table``), ``record_shape``
        ``X.shape[1:]`` when ``X`` has more than 2 dimensions, else None.

    Raises
    ------
    DataError
        If the file is not a readable .npz archive, misses ``X`` or ``y``, holds object arrays, or an
        array's header does not match its bytes.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {name.removesuffix(".npy"): name for name in zf.namelist() if name.endswith(".npy")}
            missing = [key for key in ("X", "y") if key not in members]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; found {sorted(members) or 'none'}. {NPZ_HINT}"
                )
            arrays = {key: _npz_array(zf, members[key], path) for key in ("X", "y", "ids") if key in members}
    except DataError:
        raise
    except _NPZ_ERRORS as exc:
        raise DataError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc}); {NPZ_HINT}") from exc
    X, y, ids = arrays["X"], arrays["y"], arrays.get("ids")
    if X.ndim < 2 or X.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: X must be a numeric ndarray of shape (n_samples, n_features) (or (n_samples, ...), "
            f"flattened), got shape {X.shape} of {X.dtype}; {NPZ_HINT}"
        )
    for key, array in (("y", y), ("ids", ids)):
        if array is not None and (array.ndim != 1 or len(array) != len(X)):
            raise DataError(
                f"{path}: {key} must have shape (n_samples,) = ({len(X)},) like X's first axis, got {array.shape}"
            )
    if X.size == 0:
        raise DataError(f"{path}: no records (X has shape {X.shape}); {NPZ_HINT}")
    record_shape = tuple(int(d) for d in X.shape[1:]) if X.ndim > 2 else None
    return Records(X=X.reshape(len(X), -1), labels=y, ids=ids, record_shape=record_shape)


def is_idx_path(path: str | Path) -> bool:
    """Whether a file name looks like an IDX file: ``.idx``, ``.idx3``, ``-idx3-ubyte`` or ``-ubyte``, maybe ``.gz``.

    >>> is_idx_path("train-images-idx3-ubyte.gz"), is_idx_path("x.idx"), is_idx_path("x.csv")
    (True, True, False)
    """
    name = Path(path).name.lower().removesuffix(".gz")
    return _IDX_NAME.search(name) is not None


def read_idx_pair(images_path: str | Path, labels_path: str | Path | None) -> Records:
    """Read an IDX images file and its IDX labels file.

    Parameters
    ----------
    images_path : str or Path
        IDX file of shape (n_samples, ...), for example (n_samples, 28, 28) of uint8.
    labels_path : str or Path
        IDX file of shape (n_samples,).

    Returns
    -------
    Records
        uint8 values are divided by 255; other types are kept as they are (as float32).

    Raises
    ------
    DataError
        If ``labels_path`` is missing, a file does not parse, the shapes do not fit or the lengths differ.
    """
    images_path = Path(images_path)
    if labels_path is None:
        raise DataError(
            f"{images_path}: an IDX images file needs its labels: pass the IDX labels file as well "
            "(labels_path, --labels labels.idx)"
        )
    labels_path = Path(labels_path)
    images = read_idx(images_path, hint=IDX_HINT)
    if images.ndim < 2:
        raise DataError(
            f"{images_path}: holds a 1-D array of {images.shape[0]} values, like a labels file; pass the IDX "
            "images file (shape (n_samples, ...)) as the data and the labels file as labels_path (--labels)"
        )
    labels = read_idx(labels_path, hint=IDX_HINT)
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path}: an IDX labels file must hold shape (n_samples,), got {labels.shape}; "
            "pass the labels file as labels_path and the images file as the data"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{images_path} holds {len(images)} records but {labels_path} holds {len(labels)} labels; "
            "pass the labels file that belongs to these images"
        )
    if len(images) == 0 or images.size == 0:
        raise DataError(f"{images_path}: no records (the IDX file holds shape {images.shape})")
    X = images.reshape(len(images), -1).astype(np.float32)
    if images.dtype == np.uint8:
        X /= np.float32(255.0)
    return Records(X=X, labels=labels, ids=None, record_shape=tuple(int(d) for d in images.shape[1:]))


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
        raise ConfigError("reading an image folder needs Pillow: pip install pillow") from exc
    return Image


def _pixels(img: Any, file: Path) -> np.ndarray:
    """An opened Pillow image as float32 in [0, 1]: shape (height, width) for grayscale, else (height, width, 3)."""
    mode = img.mode
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255.0)
    if mode.startswith("I"):  # 16-bit grayscale ("I;16", "I;16B") or the 32-bit integers Pillow widens it to
        values = np.asarray(img).astype(np.float32)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{file}: 32-bit integer pixels (mode {mode}) outside 0..65535; save the image as 8-bit or 16-bit"
            )
        return values / np.float32(65535.0)
    if mode == "F":
        raise DataError(f"{file}: floating-point pixels (mode F) are not supported; save the image as 8-bit or 16-bit")
    return np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _read_image(file: Path, expected: tuple[tuple[int, int], Path] | None) -> np.ndarray:
    """Decode one image; ``expected`` is ((width, height), first file) to check the size before decoding."""
    Image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. palette transparency notes
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                if expected is not None and tuple(img.size) != expected[0]:
                    (w, h), first = expected
                    raise DataError(
                        f"{file}: image is {img.size[0]}x{img.size[1]} pixels but {first} is {w}x{h}; every image "
                        "of the folder must have one size: resize them first"
                    )
                return _pixels(img, file)
    except DataError:
        raise
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(
            f"{file}: cannot read the image ({type(exc).__name__}: {exc}); replace or remove the file"
        ) from exc


def _image_files(root: Path) -> tuple[list[Path], list[str]]:
    """Image files under the class subfolders of ``root`` (sorted), and the class name of each."""
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DataError(f"{root}: cannot list the folder ({exc})") from exc
    class_dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
    if loose and not class_dirs:
        raise DataError(
            f"{root}: images lie directly in the folder ({loose[0].name}, ...); an image folder holds one "
            f"subfolder per class: put each image in a subfolder named by its class ({root}/<class>/{loose[0].name})"
        )
    if loose:
        logger.warning("%s: ignoring %d image(s) outside the class subfolders", root, len(loose))
    files: list[Path] = []
    classes: list[str] = []
    skipped = 0
    for class_dir in class_dirs:
        found = 0
        for folder, subdirs, names in os.walk(class_dir):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    skipped += 1
                    continue
                files.append(Path(folder) / name)
                classes.append(class_dir.name)
                found += 1
        if not found:
            logger.warning("%s: class folder %r holds no images", root, class_dir.name)
    if skipped:
        logger.info("%s: skipped %d file(s) that are not images (%s)", root, skipped, ", ".join(IMAGE_SUFFIXES))
    if not files:
        raise DataError(
            f"{root}: no images found; an image folder holds one subfolder per class with image files "
            f"({', '.join(IMAGE_SUFFIXES)}), e.g. {root}/cat/1.png"
        )
    return files, classes


def read_image_folder(root: str | Path) -> Records:
    """Read a folder of images with one subfolder per class, like torchvision's ImageFolder.

    Parameters
    ----------
    root : str or Path
        ``root/<class>/<image>``; images may sit deeper inside a class folder. Hidden files and files
        without an image suffix (:data:`IMAGE_SUFFIXES`) are skipped.

    Returns
    -------
    Records
        Labels are the class folder names (str objects), ids the paths relative to ``root``. Grayscale
        images give records of shape (height, width), all others (height, width, 3) (alpha dropped).

    Raises
    ------
    DataError
        If there are no images, a file cannot be decoded, or an image's size or mode (grayscale or colour)
        differs from the first one's; the message names the odd file.
    """
    root = Path(root)
    files, classes = _image_files(root)
    first = _read_image(files[0], None)
    expected = ((first.shape[1], first.shape[0]), files[0])
    X = np.empty((len(files), first.size), dtype=np.float32)
    X[0] = first.reshape(-1)
    for i, file in enumerate(files[1:], start=1):
        pixels = _read_image(file, expected)
        if pixels.shape != first.shape:
            kind = {2: "grayscale", 3: "colour"}
            raise DataError(
                f"{file}: a {kind[pixels.ndim]} image but {files[0]} is {kind[first.ndim]}; every image of the "
                "folder must have one mode: convert them all to grayscale or all to RGB first"
            )
        X[i] = pixels.reshape(-1)
    ids = np.asarray([file.relative_to(root).as_posix() for file in files], dtype=str)
    logger.info("%s: read %d images of shape %s in %d classes", root, len(files), first.shape, len(set(classes)))
    return Records(
        X=X, labels=np.asarray(classes, dtype=object), ids=ids, record_shape=tuple(int(d) for d in first.shape)
    )
