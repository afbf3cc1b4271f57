"""Every reader of a user's data, fuzzed: any bytes give a valid Table or a DataError naming the file, nothing else.

Arbitrary bytes, valid files with damaged bytes, headers that declare huge sizes, and CSV files made of random
cells (checked against the cells' own values). Seeded (``derandomize=True``) so that every run is the same.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miaudit.data import Table, read_member_ids, read_table, write_idx
from miaudit.data.idx import IDX_TYPES
from miaudit.errors import DataError

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),
    derandomize=True,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the whole module; each example overwrites its file."""
    return tmp_path_factory.mktemp("fuzz")


def check_valid(table: Table) -> None:
    """What every Table read from a file satisfies."""
    n = len(table)
    assert n > 0 and table.X.dtype == np.float32 and table.X.ndim == 2 and table.X.shape[1] > 0
    assert np.isfinite(table.X).all()
    assert table.labels.shape == (n,) and table.ids.shape == (n,)
    assert len(np.unique(table.ids)) == n and all(table.ids)
    assert table.labels.dtype == np.int64 or all(isinstance(v, str) and v for v in table.labels)
    assert len(table.feature_names) == table.X.shape[1]


def table_or_data_error(read: Callable[[], Table], named: Path) -> Table | None:
    """Run a reader: a valid Table, or a DataError whose message names ``named``; any other exception fails."""
    try:
        table = read()
    except DataError as exc:
        assert str(named) in str(exc), str(exc)
        event(f"DataError ({type(exc.__cause__).__name__ if exc.__cause__ else 'checked'})")
        return None
    check_valid(table)
    event("Table")
    return table


def damaged(data: bytes, draw: st.DrawFn) -> bytes:
    """``data`` with a few bytes overwritten and maybe cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


def parquet_bytes() -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sink = io.BytesIO()
    table = pa.table({"id": ["a", "b", "c"], "x": [1.0, 2.5, -3.0], "n": [1, 2, 3], "label": [0, 1, 0]})
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def npz_bytes() -> bytes:
    sink = io.BytesIO()
    np.savez(
        sink, X=np.arange(12, dtype=np.float32).reshape(3, 4), y=np.array([0, 1, 0]), ids=np.array(["a", "b", "c"])
    )
    return sink.getvalue()


def png_bytes(shape: tuple[int, ...] = (3, 2)) -> bytes:
    from PIL import Image

    sink = io.BytesIO()
    Image.fromarray(np.arange(math.prod(shape), dtype=np.uint8).reshape(shape)).save(sink, format="PNG")
    return sink.getvalue()


# --------------------------------------------------------------------------------------------------
# Arbitrary bytes, every format


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz", ".idx", "-images-idx3-ubyte.gz"])
@FUZZ
@given(
    data=st.binary(max_size=600),
    prefix=st.sampled_from([b"", b"PAR1", b"PK\x03\x04", b"\x00\x00\x08\x03", b"\x1f\x8b"]),
)
def test_arbitrary_bytes_give_a_table_or_a_data_error(folder: Path, suffix: str, data: bytes, prefix: bytes) -> None:
    path = folder / f"data{suffix}"
    path.write_bytes(prefix + data + (b"PAR1" if prefix == b"PAR1" else b""))
    labels = write_idx(folder / "labels.idx", np.zeros(3, dtype=np.uint8))
    table_or_data_error(lambda: read_table(path, labels_path=labels if "idx" in suffix else None), path)


@FUZZ
@given(text=st.text(max_size=300), header=st.sampled_from(["", "a,label\n", "id,a,label\n", "label\n"]))
def test_arbitrary_text_as_csv(folder: Path, text: str, header: str) -> None:
    path = folder / "text.csv"
    path.write_text(header + text, encoding="utf-8", errors="surrogatepass")
    table_or_data_error(lambda: read_table(path), path)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif"]))
def test_arbitrary_bytes_in_an_image_folder(folder: Path, data: bytes, suffix: str) -> None:
    root = folder / "images"
    (root / "a").mkdir(parents=True, exist_ok=True)
    for old in (root / "a").iterdir():
        old.unlink()
    (root / "a" / "0.png").write_bytes(png_bytes())
    path = root / "a" / f"1{suffix}"
    header = {
        ".png": b"\x89PNG\r\n\x1a\n",
        ".jpg": b"\xff\xd8\xff",
        ".gif": b"GIF89a",
        ".bmp": b"BM",
        ".tif": b"II*\x00",
    }
    path.write_bytes(header[suffix] + data)
    table_or_data_error(lambda: read_table(root), root)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".txt"]))
def test_arbitrary_bytes_as_member_ids(folder: Path, data: bytes, suffix: str) -> None:
    path = folder / f"members{suffix}"
    path.write_bytes(data)
    try:
        ids = read_member_ids(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    assert ids.ndim == 1 and ids.size > 0 and all(ids)


# --------------------------------------------------------------------------------------------------
# Valid files with damaged bytes


@pytest.mark.parametrize("kind", ["parquet", "npz", "png", "idx.gz", "idx"])
@FUZZ
@given(data=st.data())
def test_damaged_files_give_a_table_or_a_data_error(folder: Path, kind: str, data: st.DataObject) -> None:
    labels = write_idx(folder / "labels3.idx", np.array([0, 1, 0], dtype=np.uint8))
    if kind == "png":
        root = folder / "damaged-images"
        (root / "a").mkdir(parents=True, exist_ok=True)
        (root / "a" / "0.png").write_bytes(damaged(png_bytes(), data.draw))
        table_or_data_error(lambda: read_table(root), root)
        return
    if kind.startswith("idx"):
        original = folder / "clean.idx"
        write_idx(original, np.arange(12, dtype=np.uint8).reshape(3, 2, 2), compress=kind == "idx.gz")
        content = original.read_bytes()
    else:
        content = parquet_bytes() if kind == "parquet" else npz_bytes()
    path = folder / f"damaged.{kind.split('.')[0]}"
    path.write_bytes(damaged(content, data.draw))
    table_or_data_error(lambda: read_table(path, labels_path=labels if kind.startswith("idx") else None), path)


# --------------------------------------------------------------------------------------------------
# Headers that declare huge or odd sizes


@FUZZ
@given(
    code=st.sampled_from(sorted(IDX_TYPES)),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
    payload=st.binary(max_size=64),
    compress=st.booleans(),
)
def test_idx_headers_of_any_size(folder: Path, code: int, dims: list[int], payload: bytes, compress: bool) -> None:
    content = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    path = folder / "header.idx"
    path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    labels = write_idx(folder / "labels-any.idx", np.zeros(dims[0] if dims[0] < 1000 else 1, dtype=np.uint8))
    table = table_or_data_error(lambda: read_table(path, labels_path=labels), path)
    if table is not None:  # only a header that matches its payload exactly is read
        assert math.prod(dims) * IDX_TYPES[code][0].itemsize == len(payload)


def npy_member(shape: tuple[int, ...], descr: str, payload: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


@FUZZ
@given(
    shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=3).map(tuple),
    descr=st.sampled_from(["<f4", "<f8", "|u1", "<i8", "<U3", "|S2", "|O", "|V4", "<c8", "|b1", "<M8[s]"]),
    payload=st.binary(max_size=48),
    y_descr=st.sampled_from(["<i8", "<U2", "|O", "<f8"]),
)
def test_npz_headers_of_any_size(
    folder: Path, shape: tuple[int, ...], descr: str, payload: bytes, y_descr: str
) -> None:
    path = folder / "header.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", npy_member(shape, descr, payload))
        n = shape[0] if shape and shape[0] < 50 else 2
        itemsize = {"<i8": 8, "<U2": 8, "|O": 8, "<f8": 8}[y_descr]
        zf.writestr("y.npy", npy_member((n,), y_descr, bytes(n * itemsize)))
    table_or_data_error(lambda: read_table(path), path)


@FUZZ
@given(
    header=st.binary(max_size=120), payload=st.binary(max_size=32), version=st.sampled_from([b"\x01\x00", b"\x02\x00"])
)
def test_npz_with_arbitrary_npy_headers(folder: Path, header: bytes, payload: bytes, version: bytes) -> None:
    size = len(header).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    path = folder / "npy-header.npz"
    with zipfile.ZipFile(path, "w") as zf:  # a valid archive (CRC and all) around a damaged array
        zf.writestr("X.npy", b"\x93NUMPY" + version + size + header + payload)
        zf.writestr("y.npy", npy_member((2,), "<i8", bytes(16)))
    table_or_data_error(lambda: read_table(path), path)


# --------------------------------------------------------------------------------------------------
# CSV files of random cells, checked against the cells


def number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f" {v:g} "),
    )


ODD_CELL = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-Infinity", "1e39", "1_000", "0x10", "true", "a,b", 'q"uote', "x\ny"]),
    st.text(max_size=6),
)
CELL = st.one_of(number_text(), number_text(), number_text(), ODD_CELL)  # mostly numbers: some files read


@st.composite
def csv_cells(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header and rows of random cells; mostly one cell per column, often unique ids, half only numbers."""
    header = draw(st.permutations(["id", "a", "b", "member", "c"]))[: draw(st.integers(0, 4))]
    if draw(st.integers(0, 9)) > 0:
        header.insert(draw(st.integers(0, len(header))), "label")
    if draw(st.integers(0, 9)) == 0:  # a nameless or repeated column
        header.append(draw(st.sampled_from(["", *header])) if header else "")
    width = len(header)
    cell = CELL if draw(st.booleans()) else number_text()  # half the files hold only numbers
    row = st.lists(cell, max_size=6) if draw(st.integers(0, 9)) == 0 else st.lists(cell, min_size=width, max_size=width)
    rows = draw(st.lists(row, min_size=draw(st.integers(0, 1)), max_size=6))
    if "id" in header and draw(st.integers(0, 3)) > 0:
        at = header.index("id")
        rows = [[f"r{k}" if i == at else cell for i, cell in enumerate(r)] for k, r in enumerate(rows)]
    return header, rows


@FUZZ
@given(cells=csv_cells())
def test_csv_of_random_cells(folder: Path, cells: tuple[list[str], list[list[str]]]) -> None:
    header, rows = cells
    sink = io.StringIO()
    writer = csv.writer(sink)
    writer.writerow(header)
    writer.writerows(rows)
    path = folder / "cells.csv"
    path.write_text(sink.getvalue(), encoding="utf-8")
    table = table_or_data_error(lambda: read_table(path), path)
    if table is None:
        return
    features = [i for i, name in enumerate(header) if name not in ("id", "label")]
    body = [row for row in rows if row]  # csv writes an empty row as a blank line, which is skipped
    expected = np.asarray([[float(row[i]) for i in features] for row in body], dtype=np.float32)
    np.testing.assert_array_equal(table.X, expected)
    assert table.feature_names == tuple(header[i] for i in features)
    label_cells = [row[header.index("label")].strip() for row in body]
    assert [str(v) for v in table.labels.tolist()] == label_cells or table.labels.dtype == np.int64
    if "id" in header:
        assert table.ids.tolist() == [row[header.index("id")].strip() for row in body]


@FUZZ
@given(
    values=st.lists(
        st.tuples(
            st.floats(allow_nan=False, allow_infinity=False, width=32),
            st.integers(-(2**31), 2**31),
            st.sampled_from(["cat", "dog", "7", "-1"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_csv_of_valid_cells_always_reads(folder: Path, values: list[tuple[float, int, str]]) -> None:
    path = folder / "valid.csv"
    lines = ["id,x,n,label"] + [f"r{i},{x!r},{n},{label}" for i, (x, n, label) in enumerate(values)]
    path.write_text("\n".join(lines), encoding="utf-8")
    table = read_table(path)  # no DataError for a well-formed file
    np.testing.assert_array_equal(table.X, np.asarray([(x, n) for x, n, _ in values], dtype=np.float32))
    assert [str(v) for v in table.labels.tolist()] == [label for _, _, label in values]
    assert table.ids.tolist() == [f"r{i}" for i in range(len(values))]
