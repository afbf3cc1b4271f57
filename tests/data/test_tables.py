"""A user's own data: every format read back exactly, labels, ids, members, content identity and every error."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from miaudit.data import (
    Table,
    check_disjoint,
    encode_labels,
    member_mask,
    read_member_ids,
    read_table,
    record_digests,
    write_idx,
)
from miaudit.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "data.csv",
        "id,age,income,label,member\nr1,30,0.1,cat,1\nr2,41,2.5,dog,0\nr3,25,-1e-3,cat,true\nr4,60,7,bird,false\n",
    )


# --------------------------------------------------------------------------------------------------
# CSV


def test_csv_round_trip_with_ids_and_string_labels(csv_file: Path) -> None:
    table = read_table(csv_file, exclude_columns=["member"])
    assert isinstance(table, Table) and len(table) == 4
    np.testing.assert_array_equal(
        table.X, np.array([[30, 0.1], [41, 2.5], [25, -1e-3], [60, 7]], dtype=np.float32), strict=True
    )
    assert table.labels.dtype == object and table.labels.tolist() == ["cat", "dog", "cat", "bird"]
    assert table.ids.tolist() == ["r1", "r2", "r3", "r4"]
    assert table.feature_names == ("age", "income")
    assert table.record_shape is None and table.source == str(csv_file)
    assert table.extra_columns["member"].tolist() == ["1", "0", "true", "false"]


def test_csv_without_id_column_uses_row_numbers_and_integer_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "\ufeffa, b ,label\n1,2,0\n\n3,4,1.0\n5,6, 2\n")  # BOM, blank line, spaces
    table = read_table(path)
    assert table.ids.tolist() == ["0", "1", "2"]
    assert table.labels.dtype == np.int64 and table.labels.tolist() == [0, 1, 2]
    assert table.feature_names == ("a", "b")
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 4], [5, 6]])


def test_csv_feature_columns_choose_and_order(csv_file: Path) -> None:
    write(csv_file, csv_file.read_text().replace("member", "colour").replace(",1\n", ",red\n"))
    table = read_table(csv_file, feature_columns=["income", "age"])
    assert table.feature_names == ("income", "age")
    np.testing.assert_array_equal(table.X[0], np.array([0.1, 30], dtype=np.float32))


def test_csv_other_label_and_id_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "key,x,y\n7,0.5,a\n8,1.5,b\n")
    table = read_table(path, label_column="y", id_column="key")
    assert table.ids.tolist() == ["7", "8"] and table.labels.tolist() == ["a", "b"]
    assert table.feature_names == ("x",)


def test_csv_reads_more_rows_than_one_chunk(tmp_path: Path) -> None:
    n = 5000  # more than one chunk of rows, with an empty cell in the second chunk
    lines = ["x,y,label"] + [f"{i},{2 * i},{i % 3}" for i in range(n)]
    table = read_table(write(tmp_path / "big.csv", "\n".join(lines)))
    np.testing.assert_array_equal(table.X[:, 1], 2 * np.arange(n, dtype=np.float32))
    lines[4500] = "4499,,1"
    with pytest.raises(DataError, match=r"1 feature values are empty, NaN or infinite .* record '4499', feature 'y'"):
        read_table(write(tmp_path / "big.csv", "\n".join(lines)))


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("a,b,target\n1,2,0\n", {}, r"no label column 'label' \(the columns present are 'a', 'b', 'target'\)"),
        ("1,2,3\n4,5,6\n", {}, r"must be a header naming the columns"),
        ("a;b;label\n1;2;0\n", {}, r"seems not to be comma-separated"),
        ("a,label\n1,0\n", {"id_column": "key"}, r"no id column 'key' .*pass the right --id-column"),
        ("a,label\n", {}, r"has a header but no records"),
        ("", {}, r"the file is empty"),
        ("\n\n", {}, r"the file is empty"),
        ("a,label\n1,0\n2\n", {}, r"line 3 has 1 fields but the header has 2"),
        ("a,a,label\n1,2,0\n", {}, r"names columns more than once \('a'\)"),
        ("a,,label\n1,2,0\n", {}, r"column 2 has no name"),
        ("id,label\n1,0\n", {}, r"no feature columns"),
        (
            "a,colour,label\n1,red,0\n2,blue,1\n",
            {},
            r"feature column 'colour' is not numeric \(record '0' holds 'red'\)",
        ),
        ("a,label\n1,0\n2,\n3,\n", {}, r"2 records have no label \(first: record '1'\)"),
        ("id,a,label\nx,1,0\n,2,1\n", {}, r"1 records have no id in column 'id' \(first: row 1\)"),
        ("id,a,label\nx,1,0\ny,2,1\nx,3,0\n", {}, r"1 ids appear more than once in column 'id' \('x'\)"),
        ("id,a,b,label\nr1,1,,0\nr2,nan,2,1\nr3,inf,1e39,0\n", {}, r"4 feature values .* first is record 'r1'"),
        ("a,label\n1,0\n", {"feature_columns": ["z"]}, r"no feature column\(s\) 'z'"),
        ("a,label\n1,0\n", {"exclude_columns": ["m"]}, r"no column 'm'"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_table(write(tmp_path / "d.csv", text), **kwargs)


def test_csv_non_numeric_column_error_names_both_fixes(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,colour,label\n1,red,0\n")
    with pytest.raises(DataError, match=r"encode it as numbers first, or pass --feature-columns"):
        read_table(path)
    assert read_table(path, feature_columns=["a"]).feature_names == ("a",)


def test_trailing_nul_characters_are_stripped_like_spaces(tmp_path: Path) -> None:
    # numpy strings drop trailing NULs, so "a\x00" and "a" would be one id after the duplicate check
    path = write(tmp_path / "d.csv", "id,x,label\na\x00,1,0\na,2,1\n")
    with pytest.raises(DataError, match=r"1 ids appear more than once in column 'id' \('a'\)"):
        read_table(path)
    with pytest.raises(DataError, match=r"no member ids"):
        read_member_ids(write(tmp_path / "m.txt", "\x00\n \x00 \n"))


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,label\n\xff\xfe,0\n")
    with pytest.raises(DataError, match=r"not UTF-8 text"):
        read_table(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_columns": ["a", "label"]}, r"names 'label', the label, id or member column"),
        ({"feature_columns": ["a", "a"]}, r"names a column twice"),
        ({"exclude_columns": ["label"]}, r"'label' is the label column"),
        ({"labels_path": "y.idx"}, r"labels_path \(--labels\) is for IDX files"),
    ],
)
def test_csv_option_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        read_table(write(tmp_path / "d.csv", "a,label\n1,0\n"), **kwargs)


@pytest.mark.parametrize(
    ("name", "match"),
    [("missing.csv", r"does not exist"), ("data.json", r"unsupported file type '.json'")],
)
def test_path_errors(tmp_path: Path, name: str, match: str) -> None:
    write(tmp_path / "data.json", "{}")
    with pytest.raises(DataError, match=match):
        read_table(tmp_path / name)


# --------------------------------------------------------------------------------------------------
# Parquet


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = {
        "id": [10, 11, 12],
        "x": [0.25, -1.5, 3.0],
        "n": pa.array([1, 2, 2**40], type=pa.int64()),
        "flag": [True, False, True],
        "price": pa.array([Decimal("1.25"), Decimal("-2.50"), Decimal("0.00")], type=pa.decimal128(5, 2)),
        "label": pa.array(["a", "b", "a"]).dictionary_encode(),
        "member": [True, False, False],
    }
    pq.write_table(pa.table(data), tmp_path / "d.parquet")
    table = read_table(tmp_path / "d.parquet", exclude_columns=("member",))
    assert table.ids.tolist() == ["10", "11", "12"] and table.labels.tolist() == ["a", "b", "a"]
    assert table.feature_names == ("x", "n", "flag", "price")
    expected = np.array([[0.25, 1, 1, 1.25], [-1.5, 2, 0, -2.5], [3, 2**40, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(table.X, expected)
    assert member_mask(table, member_column="member").tolist() == [True, False, False]
    pq.write_table(pa.table({"x": [1.0, 2.0], "label": [0.0, 1.0]}), tmp_path / "f.pq")
    floats = read_table(tmp_path / "f.pq")
    assert floats.labels.dtype == np.int64 and floats.labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"x": [1.0, None, 3.0], "label": [0, 1, 0]}, r"1 feature values are empty, NaN .* record '1', feature 'x'"),
        (
            {"x": ["a", "b"], "label": [0, 1]},
            r"feature column 'x' is not numeric \(record '0' holds 'a \(type string\)'",
        ),
        ({"x": [1, 2], "label": [0, None]}, r"1 records have no label \(first: record '1'\)"),
        ({"x": [1, 2], "y": [0, 1]}, r"no label column 'label' \(the columns present are 'x', 'y'\)"),
        ({"x": [], "label": []}, r"has columns but no records"),
    ],
)
def test_parquet_errors(tmp_path: Path, columns: dict, match: str) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), tmp_path / "d.parquet")
    with pytest.raises(DataError, match=match):
        read_table(tmp_path / "d.parquet")


def test_parquet_corrupt_file(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"x": [1.0, 2.0], "label": [0, 1]}), tmp_path / "d.parquet")
    data = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "d.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d.parquet: cannot read as Parquet"):
        read_table(tmp_path / "d.parquet")


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    write(tmp_path / "d.parquet", "not read")
    with pytest.raises(ConfigError, match=r"pip install 'miaudit\[audit\]'"):
        read_table(tmp_path / "d.parquet")


# --------------------------------------------------------------------------------------------------
# NPZ


def test_npz_round_trip_keeps_record_shape_and_values(tmp_path: Path) -> None:
    X = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(tmp_path / "d.npz", X=X, y=np.array(["a", "b"]), ids=np.array([5, 9]))
    table = read_table(tmp_path / "d.npz")
    np.testing.assert_array_equal(table.X, X.reshape(2, 12).astype(np.float32))  # kept as stored, not scaled
    assert table.record_shape == (3, 4) and table.feature_names[:2] == ("x0", "x1") and len(table.feature_names) == 12
    assert table.labels.tolist() == ["a", "b"] and table.ids.tolist() == ["5", "9"]
    np.savez_compressed(tmp_path / "e.npz", X=np.ones((3, 2)), y=np.array([2, 0, 1]))
    plain = read_table(tmp_path / "e.npz")
    assert plain.record_shape is None and plain.ids.tolist() == ["0", "1", "2"] and plain.labels.tolist() == [2, 0, 1]


def _lying_npz(path: Path) -> Path:
    """An .npz whose X.npy header declares a huge shape over a few bytes (a valid zip, CRC and all)."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (10**12, 10**6)
    payload = b"\x93NUMPY\x01\x00"
    text = repr(header).encode("latin1") + b" "
    text += b" " * (-(len(payload) + 2 + len(text) + 1) % 64) + b"\n"
    payload += len(text).to_bytes(2, "little") + text + bytes(8)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", payload)
        zf.writestr("y.npy", (path.parent / "y.npy").read_bytes())
    return path


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X": np.ones((2, 2))}, r"missing array\(s\) y; found \['X'\]"),
        ({"X": np.ones((2, 2)), "y": np.array([1, "a"], dtype=object)}, r"holds Python objects"),
        ({"X": np.ones(3), "y": np.zeros(3)}, r"X must be a numeric ndarray of shape \(n_samples, n_features\)"),
        ({"X": np.array([["a"]]), "y": np.zeros(1)}, r"X must be a numeric ndarray"),
        ({"X": np.ones((3, 2)), "y": np.zeros(2)}, r"y must have shape \(n_samples,\) = \(3,\)"),
        ({"X": np.ones((2, 2)), "y": np.zeros(2), "ids": np.array([1, 1])}, r"1 ids appear more than once"),
        ({"X": np.array([[1.0], [np.inf]]), "y": np.zeros(2)}, r"1 feature values .* record '1', feature 'x0'"),
        ({"X": np.ones((0, 2)), "y": np.zeros(0)}, r"no records \(X has shape \(0, 2\)\)"),
        ({"X": np.ones((2, 0)), "y": np.zeros(2)}, r"no records \(X has shape \(2, 0\)\)"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match):
        read_table(tmp_path / "d.npz")


def test_npz_damaged_files(tmp_path: Path) -> None:
    write(tmp_path / "text.npz", "not a zip")
    with pytest.raises(DataError, match=r"text.npz: cannot read as .npz \(BadZipFile"):
        read_table(tmp_path / "text.npz")
    np.save(tmp_path / "y.npy", np.zeros(2))
    with pytest.raises(DataError, match=r"array X.npy declares shape \(1000000000000, 1000000\)"):
        read_table(_lying_npz(tmp_path / "lie.npz"))


def test_npz_header_that_does_not_parse(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as zf:  # found by fuzzing: the tokenizer's own error type
        zf.writestr("X.npy", b"\x93NUMPY\x01\x00" + (3).to_bytes(2, "little") + b"{\n\n")
        zf.writestr("y.npy", b"")
    with pytest.raises(DataError, match=r"d.npz: cannot read as .npz \((TokenError|SyntaxError|ValueError)"):
        read_table(tmp_path / "d.npz")


def test_npz_rejects_table_options(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=np.zeros(2))
    with pytest.raises(ConfigError, match=r"--label-column, --feature-columns do\(es\) not apply to .npz"):
        read_table(tmp_path / "d.npz", label_column="target", feature_columns=["a"])
    with pytest.raises(ConfigError, match=r"--labels do\(es\) not apply"):
        read_table(tmp_path / "d.npz", labels_path=tmp_path / "y.idx")


# --------------------------------------------------------------------------------------------------
# IDX


def test_idx_pair_round_trip(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 2, dtype=np.uint8).reshape(3, 4, 2) * 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([2, 0, 1], dtype=np.uint8))
    table = read_table(tmp_path / "train-images-idx3-ubyte.gz", labels_path=tmp_path / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(table.X, images.reshape(3, 8).astype(np.float32) / np.float32(255))
    assert table.record_shape == (4, 2) and table.labels.tolist() == [2, 0, 1] and table.ids.tolist() == ["0", "1", "2"]
    write_idx(tmp_path / "f.idx", images.astype(np.float32) - 5, compress=False)
    write_idx(tmp_path / "l.idx", np.array([1, 1, 0], dtype=np.int32), compress=False)
    np.testing.assert_array_equal(read_table(tmp_path / "f.idx", labels_path=tmp_path / "l.idx").X[0, :2], [-5, 5])


def test_idx_errors(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((3, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "y.idx", np.zeros(3, dtype=np.uint8))
    write_idx(tmp_path / "y5.idx", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"an IDX images file needs its labels"):
        read_table(tmp_path / "x.idx")
    with pytest.raises(DataError, match=r"y.idx: holds a 1-D array of 3 values, like a labels file"):
        read_table(tmp_path / "y.idx", labels_path=tmp_path / "x.idx")
    with pytest.raises(DataError, match=r"x.idx: an IDX labels file must hold shape \(n_samples,\)"):
        read_table(tmp_path / "x.idx", labels_path=tmp_path / "x.idx")
    with pytest.raises(DataError, match=r"holds 3 records but .*y5.idx holds 5 labels"):
        read_table(tmp_path / "x.idx", labels_path=tmp_path / "y5.idx")


def test_idx_huge_declared_size_is_an_error_not_an_allocation(tmp_path: Path) -> None:
    (tmp_path / "huge.idx").write_bytes(bytes([0, 0, 0x0E, 3]) + (2**31).to_bytes(4, "big") * 3 + bytes(16))
    write_idx(tmp_path / "y.idx", np.zeros(2, dtype=np.uint8))
    with pytest.raises(DataError, match=r"truncated IDX payload.*Check that it is an IDX file"):
        read_table(tmp_path / "huge.idx", labels_path=tmp_path / "y.idx")
    # no records, but records of a size no array can hold, or just huge ones (found by fuzzing)
    write_idx(tmp_path / "y0.idx", np.zeros(0, dtype=np.uint8))
    (tmp_path / "e.idx").write_bytes(bytes([0, 0, 0x08, 4, 0, 0, 0, 0]) + (2**31 - 1).to_bytes(4, "big") * 3)
    with pytest.raises(DataError, match=r"e.idx: the header's dims \(0, 2147483647, .*too large for any machine"):
        read_table(tmp_path / "e.idx", labels_path=tmp_path / "y0.idx")
    (tmp_path / "e.idx").write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0, 0]) + (2**30).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match=r"e.idx: no records \(the IDX file holds shape \(0, 1073741824, 1073741824\)"):
        read_table(tmp_path / "e.idx", labels_path=tmp_path / "y0.idx")


# --------------------------------------------------------------------------------------------------
# Image folders


def save_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_image_folder_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)  # 4 images of 5x3 pixels
    for i, (cls, pixels) in enumerate(zip(["cat", "cat", "dog", "dog"], images, strict=True)):
        save_png(tmp_path / "imgs" / cls / f"{i}.png", pixels)
    write(tmp_path / "imgs" / "dog" / "notes.txt", "skipped")
    save_png(tmp_path / "imgs" / "dog" / ".hidden.png", images[0])
    table = read_table(tmp_path / "imgs")
    assert table.ids.tolist() == ["cat/0.png", "cat/1.png", "dog/2.png", "dog/3.png"]
    assert table.labels.tolist() == ["cat", "cat", "dog", "dog"] and table.record_shape == (5, 3)
    np.testing.assert_array_equal(table.X, images.reshape(4, 15).astype(np.float32) / np.float32(255))
    assert encode_labels(table.labels, ["cat", "dog"]).tolist() == [0, 0, 1, 1]


def test_image_folder_colour_16_bit_and_integer_class_names(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    for cls in ("0", "1"):
        (tmp_path / "rgb" / cls).mkdir(parents=True)
    plt.imsave(tmp_path / "rgb" / "0" / "a.png", np.zeros((2, 3)), cmap="gray", vmin=0, vmax=1)  # RGBA files
    plt.imsave(tmp_path / "rgb" / "1" / "b.png", np.ones((2, 3)), cmap="gray", vmin=0, vmax=1)
    colour = read_table(tmp_path / "rgb")
    assert colour.record_shape == (2, 3, 3) and colour.labels.dtype == np.int64 and colour.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(colour.X, np.repeat([[0.0], [1.0]], 18, axis=1).astype(np.float32))
    deep = np.array([[0, 65535], [1000, 30000]], dtype=np.uint16)
    save_png(tmp_path / "deep" / "a" / "x.png", deep)
    np.testing.assert_allclose(read_table(tmp_path / "deep").X[0], deep.reshape(-1) / 65535, rtol=1e-6)


def test_image_folder_errors(tmp_path: Path) -> None:
    gray = np.zeros((4, 4), dtype=np.uint8)
    save_png(tmp_path / "size" / "a" / "1.png", gray)
    save_png(tmp_path / "size" / "b" / "2.png", np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=r"b/2.png: image is 5x4 pixels but .*a/1.png is 4x4.*resize them"):
        read_table(tmp_path / "size")
    save_png(tmp_path / "mode" / "a" / "1.png", gray)
    save_png(tmp_path / "mode" / "a" / "2.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"2.png: a colour image but .*1.png is grayscale.*one mode"):
        read_table(tmp_path / "mode")
    save_png(tmp_path / "bad" / "a" / "1.png", gray)
    (tmp_path / "bad" / "a" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"a/2.png: cannot read the image .*replace or remove the file"):
        read_table(tmp_path / "bad")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images found; an image folder holds one subfolder per class"):
        read_table(tmp_path / "empty")
    save_png(tmp_path / "loose" / "1.png", gray)
    with pytest.raises(DataError, match=r"images lie directly in the folder \(1.png"):
        read_table(tmp_path / "loose")
    with pytest.raises(ConfigError, match=r"--id-column do\(es\) not apply to a folder of images"):
        read_table(tmp_path / "size", id_column="name")


# --------------------------------------------------------------------------------------------------
# Labels as class indices


def test_encode_labels_with_classes() -> None:
    words = np.array(["dog", "cat", "dog"], dtype=object)
    assert encode_labels(words, np.array(["cat", "dog"])).tolist() == [1, 0, 1]
    assert encode_labels(np.array([3, 7, 3]), ["7", "3"]).tolist() == [1, 0, 1]  # text classes: compared as text
    assert encode_labels(np.array(["3", "7"], dtype=object), np.array([7, 3])).tolist() == [1, 0]  # as numbers
    assert encode_labels(np.array([0, 1, 1]), np.array([0.0, 1.0])).tolist() == [0, 1, 1]
    assert encode_labels(np.array([True, False]), np.array([False, True])).tolist() == [1, 0]
    assert encode_labels(np.array([5, 2]), None).dtype == np.int64
    assert encode_labels(np.array(["5", "2"], dtype=object), None).tolist() == [5, 2]


@pytest.mark.parametrize(
    ("labels", "classes", "match"),
    [
        (
            ["cat", "emu", "emu", "yak"],
            ["cat", "dog"],
            r"3 records have labels that are not among the model's classes \('emu', 'yak'\); "
            r"the classes are 'cat', 'dog'",
        ),
        ([1, 2], [0, 1], r"1 records have labels that are not among .*\('2'\)"),
        (["a", "b"], ["a", "a"], r"the model's classes repeat a class"),
        (["cat", "1"], None, r"labels are not class indices 0, 1, ... \(e.g. 'cat'\); pass the model's classes"),
        ([0, -1], None, r"labels must be class indices 0, 1, ..., got -1"),
    ],
)
def test_encode_labels_errors(labels: list, classes: list | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        encode_labels(np.array(labels, dtype=object if isinstance(labels[0], str) else None), classes)


# --------------------------------------------------------------------------------------------------
# Members


def test_read_member_ids_formats(tmp_path: Path) -> None:
    assert read_member_ids(write(tmp_path / "m.txt", "r1\n\n r3 \n")).tolist() == ["r1", "r3"]
    assert read_member_ids(write(tmp_path / "h.txt", "id\nr2\n")).tolist() == ["r2"]
    assert read_member_ids(write(tmp_path / "one.csv", "id\nr1\nr4\n")).tolist() == ["r1", "r4"]
    assert read_member_ids(write(tmp_path / "raw.csv", "r1\nr4\n")).tolist() == ["r1", "r4"]
    many = write(tmp_path / "many.csv", "x,key\n1,r2\n2,r3\n")
    assert read_member_ids(many, id_column="key").tolist() == ["r2", "r3"]
    with pytest.raises(DataError, match=r"no id column 'id' in the header \(the columns present are 'x', 'key'\)"):
        read_member_ids(many)
    with pytest.raises(DataError, match=r"no member ids"):
        read_member_ids(write(tmp_path / "e.txt", "\n\n"))
    with pytest.raises(DataError, match=r"does not exist"):
        read_member_ids(tmp_path / "nope.txt")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"not UTF-8 text"):
        read_member_ids(tmp_path / "b.txt")
    with pytest.raises(DataError, match=r"row 3 has no field for column 'key'"):
        read_member_ids(write(tmp_path / "short.csv", "x,key\n1,r2\n3\n"), id_column="key")


def test_member_mask_by_ids_and_by_column(csv_file: Path, tmp_path: Path) -> None:
    table = read_table(csv_file, exclude_columns=["member"])
    ids = read_member_ids(write(tmp_path / "m.txt", "r3\nr1\nr1\n"))
    assert member_mask(table, member_ids=ids).tolist() == [True, False, True, False]
    assert member_mask(table, member_column="member").tolist() == [True, False, True, False]
    plain = read_table(write(tmp_path / "p.csv", "a,label\n1,0\n2,1\n3,0\n"))
    assert member_mask(plain, member_ids=np.array([0, 2])).tolist() == [True, False, True]  # row numbers
    members = write(tmp_path / "members.csv", "in\n0\n1\nyes\n")
    assert member_mask(plain, member_column="in", path_for_column=members).tolist() == [False, True, True]


def test_member_mask_errors(csv_file: Path, tmp_path: Path) -> None:
    table = read_table(csv_file, exclude_columns=["member"])
    with pytest.raises(DataError, match=r"2 of 3 member ids are not ids of .*data.csv \('r9', 'x'\)"):
        member_mask(table, member_ids=["r1", "r9", "x"])
    with pytest.raises(ConfigError, match=r"exactly one of them"):
        member_mask(table, member_ids=["r1"], member_column="member")
    with pytest.raises(ConfigError, match=r"exactly one of them"):
        member_mask(table)
    with pytest.raises(DataError, match=r"1 member ids are empty"):
        member_mask(table, member_ids=["r1", None])
    with pytest.raises(DataError, match=r"1 of 2 member ids are not ids of .* \('3'\)"):
        member_mask(table, member_ids=np.array(["r1", 3], dtype=object))  # mixed types, compared as text
    with pytest.raises(DataError, match=r"every record is a member"):
        member_mask(table, member_ids=table.ids)
    with pytest.raises(DataError, match=r"no record is a member"):
        member_mask(table.subset([1, 3]), member_column="member")
    with pytest.raises(DataError, match=r"member column 'age' is among the features"):
        member_mask(table, member_column="age")
    with pytest.raises(DataError, match=r"no member column 'other' was kept; read the data with exclude_columns"):
        member_mask(table, member_column="other")
    write(csv_file, csv_file.read_text().replace(",true\n", ",maybe\n"))
    odd = read_table(csv_file, exclude_columns=["member"])
    with pytest.raises(DataError, match=r"must hold 1/0 or true/false; 1 records .*record 'r3' holds 'maybe'"):
        member_mask(odd, member_column="member")
    short = write(tmp_path / "short.csv", "in\n1\n0\n")
    with pytest.raises(DataError, match=r"2 rows but .* has 4 records"):
        member_mask(table, member_column="in", path_for_column=short)
    with pytest.raises(DataError, match=r"no column 'zz'"):
        member_mask(table, member_column="zz", path_for_column=short)


# --------------------------------------------------------------------------------------------------
# Content identity


def test_record_digests_identify_content() -> None:
    X = np.array([[1.0, -0.0], [1.0, 0.0], [1.0, np.nextafter(np.float32(0), np.float32(1))], [2.0, 0.0]])
    digests = record_digests(X.astype(np.float32))
    assert digests.shape == (4,) and len(digests[0]) == 64
    assert digests[0] == digests[1]  # -0.0 and 0.0 are one value
    assert len(set(digests[1:].tolist())) == 3  # one ulp apart is another record
    assert record_digests(np.zeros((1, 2, 4)))[0] == record_digests(np.zeros((1, 8)))[0]  # flattened records


def test_check_disjoint_finds_a_copy_under_another_id(tmp_path: Path) -> None:
    members = read_table(write(tmp_path / "m.csv", "id,a,b,label\nm1,1,2,0\nm2,3,4,1\nm3,5,6,0\n"))
    population = read_table(write(tmp_path / "p.csv", "id,a,b,label\np1,7,8,0\np2,3,4,1\np3,9,9,0\n"))
    with pytest.raises(
        DataError,
        match=r"1 records of the population also appear among the members \(first ids: 'p2'\); an attacker "
        r"population must be disjoint from the target's training set: remove them",
    ):
        check_disjoint(population, members, what_a="population", what_b="members")
    check_disjoint(population.subset([0, 2]), members, what_a="population", what_b="members")
    with pytest.raises(DataError, match=r"2 records of the a also appear among the b \(first ids: '0', '2'\)"):
        check_disjoint(np.array([[1, 2], [0, 0], [5, 6]]), members.X, what_a="a", what_b="b")
    with pytest.raises(DataError, match=r"the a has 3 features per record but the b has 2"):
        check_disjoint(np.ones((2, 3)), members, what_a="a", what_b="b")


# --------------------------------------------------------------------------------------------------
# The Table itself


def test_table_subset_and_validation(csv_file: Path) -> None:
    table = read_table(csv_file, exclude_columns=["member"])
    picked = table.subset(np.array([False, True, False, True]))
    assert picked.ids.tolist() == ["r2", "r4"] and picked.extra_columns["member"].tolist() == ["0", "false"]
    assert table.subset([3, 0]).labels.tolist() == ["bird", "cat"] and len(table.subset([])) == 0
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        table.subset([True, False])
    with pytest.raises(ValueError, match=r"indices must be a 1-D array in -4..3"):
        table.subset([4])
    with pytest.raises(TypeError, match=r"boolean mask or integer indices"):
        table.subset([0.5])
    with pytest.raises(ValueError, match=r"Table.X must be a float32 ndarray"):
        Table(np.ones((2, 2)), np.zeros(2), np.array(["a", "b"]), ("x", "y"), None, "s")
    with pytest.raises(ValueError, match=r"Table.ids must be an ndarray of shape \(2,\)"):
        Table(np.ones((2, 2), np.float32), np.zeros(2), np.array(["a"]), ("x", "y"), None, "s")
    with pytest.raises(ValueError, match=r"Table has 2 features but 1 feature_names"):
        Table(np.ones((2, 2), np.float32), np.zeros(2), np.array(["a", "b"]), ("x",), None, "s")
    with pytest.raises(ValueError, match=r"record_shape \(3,\) does not hold 2 features"):
        Table(np.ones((2, 2), np.float32), np.zeros(2), np.array(["a", "b"]), ("x", "y"), (3,), "s")


@pytest.mark.parametrize("module", ["miaudit.data.images", "miaudit.data.tables", "miaudit.data.membership"])
def test_module_imports_alone_without_optional_packages(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "print(sorted({'pyarrow', 'PIL'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # pyarrow and Pillow are imported only when a file needs them


def test_module_doctests() -> None:
    import doctest

    from miaudit.data import images, membership, tables

    for module in (images, membership, tables):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
