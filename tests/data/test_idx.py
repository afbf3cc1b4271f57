from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from miaudit.data.idx import DEFAULT_HINT, IDX_TYPES, parse_idx, read_idx, write_idx
from miaudit.errors import DataError

HINT = re.escape("run `miaudit data fetch`")
DEBIAN = "dataset-fashion-mnist"


def _msg(path: Path, what: str) -> str:
    """Regex: the file name, then the problem, then the hint."""
    return rf"(?s){re.escape(path.name)}.*{what}.*{HINT}.*{DEBIAN}"


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path: Path, dtype: type, compress: bool) -> None:
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, array: np.ndarray) -> None:
    path = write_idx(tmp_path_factory.mktemp("idx") / "a.gz", array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = write_idx(tmp_path / "raw.gz", array, compress=False)
    raw_named_gz = write_idx(tmp_path / "compressed-idx1-ubyte", array, compress=True)
    assert raw_named_gz.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_header_layout_is_official(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((2, 3), np.uint8), compress=False)
    assert path.read_bytes()[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3])


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(DataError, match=_msg(path, "bad IDX magic number 0x01020801")):
        read_idx(path)


def test_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "weird.idx"
    path.write_bytes(b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(DataError, match=_msg(path, r"unknown type code 0x07; allowed codes are 0x08")):
        read_idx(path)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "scalar.idx"
    path.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(DataError, match=_msg(path, "zero dimensions")):
        read_idx(path)


def test_too_short_and_truncated_header(tmp_path: Path) -> None:
    short = tmp_path / "short.idx"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match=_msg(short, "too short")):
        read_idx(short)
    header = tmp_path / "header.idx"
    header.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DataError, match=_msg(header, "truncated IDX header: 3 dimensions need 16")):
        read_idx(header)


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_payload(tmp_path: Path, compress: bool) -> None:
    full = write_idx(tmp_path / "full", np.zeros((4, 5, 5), np.uint8), compress=False).read_bytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    cut = full[:-7]
    path.write_bytes(gzip.compress(cut) if compress else cut)
    with pytest.raises(DataError, match=_msg(path, r"truncated IDX payload.* = 100 bytes.*holds 93 bytes")):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    full = write_idx(tmp_path / "full", np.zeros(10, np.int32), compress=False).read_bytes()
    path.write_bytes(full + b"\x00\x01\x02")
    with pytest.raises(DataError, match=_msg(path, r"trailing bytes.*= 40 bytes.*holds 43 bytes.*3 bytes too many")):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    good = write_idx(tmp_path / "good.gz", np.arange(5000, dtype=np.int32) * 7919).read_bytes()
    if damage == "cut":
        bad = good[: len(good) // 2]
    else:
        middle = len(good) // 2
        bad = good[:middle] + bytes(b ^ 0xFF for b in good[middle : middle + 16]) + good[middle + 16 :]
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bad)
    with pytest.raises(DataError, match=_msg(path, "corrupt gzip stream")):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(DataError, match=_msg(path, "does not exist")):
        read_idx(path)


def test_custom_hint(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"x\.idx.*download it again") as info:
        read_idx(path, hint="download it again")
    assert DEFAULT_HINT not in str(info.value)


def test_parse_idx_from_bytes() -> None:
    data = bytes([0, 0, 0x0D, 1, 0, 0, 0, 2]) + np.array([1.5, -2.0], ">f4").tobytes()
    np.testing.assert_array_equal(parse_idx(data), np.array([1.5, -2.0], np.float32))
    assert set(IDX_TYPES) == {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}


def test_write_idx_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"no IDX type code.*convert it to one of"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "b", np.array(3, np.uint8))
    assert not list(tmp_path.iterdir())
