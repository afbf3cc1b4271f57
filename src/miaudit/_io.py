"""Atomic file writes: the one place that writes a temporary file and renames it into place.

A reader of ``path`` sees either the old file or the complete new one, never a partial write: the data goes
to a hidden temporary file in the same folder (``.<name>.<pid>.<token>.tmp``, so the rename stays on one file
system) and a rename moves it over ``path`` only after the write finished. A process killed mid-write leaves
at most a stray ``.tmp`` file, never a truncated ``path``. Missing parent folders are created.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "a" / "note.txt", "hello").name
'note.txt'
>>> (folder / "a" / "note.txt").read_text()
'hello'
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _temp_name(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file does not exist yet when the block starts (the writer creates it, so it gets the
    usual permissions); its name starts with ``"."`` and ends with ``".tmp"``. If the block raises, the
    temporary file is removed, ``path`` is left as it was and the exception propagates.

    Parameters
    ----------
    path : str or os.PathLike
        The final file. Its parent folders are created if missing; an existing file is replaced.

    Yields
    ------
    Path
        Where the block must write the complete contents.

    Raises
    ------
    FileNotFoundError
        If the block finished without writing the temporary file.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(
                f"atomic_path({str(final)!r}): the block wrote nothing to the temporary file {tmp.name!r}; "
                "write the contents to the yielded path, not to the final one"
            )
        tmp.replace(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a :class:`~pathlib.Path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (encoded with ``encoding``) and return ``path`` as a Path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)
