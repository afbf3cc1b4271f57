"""Atomic writes: a failed block leaves nothing behind, a successful one replaces the file."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import pytest

import miaudit._io as io_module
from miaudit._io import atomic_path, atomic_write_bytes, atomic_write_text


def test_exception_inside_block_leaves_neither_target_nor_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise KeyError("x")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_success_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old contents that are longer")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert not tmp.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_parents_are_created_and_helpers_return_the_path(tmp_path: Path) -> None:
    b = atomic_write_bytes(tmp_path / "x" / "y" / "a.bin", b"\x00\x01\xff")
    t = atomic_write_text(str(tmp_path / "z" / "b.txt"), "é", encoding="latin-1")
    assert b == tmp_path / "x" / "y" / "a.bin" and b.read_bytes() == b"\x00\x01\xff"
    assert t == tmp_path / "z" / "b.txt" and t.read_bytes() == b"\xe9"


def test_temp_names_are_unique(tmp_path: Path) -> None:
    names = set()
    for _ in range(20):
        with atomic_path(tmp_path / "f") as tmp:
            names.add(tmp.name)
            tmp.write_text("x")
    assert len(names) == 20
    assert all(str(os.getpid()) in n for n in names)


def test_block_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="wrote nothing to the temporary file"), atomic_path(target):
        pass
    assert target.read_text() == "old"


def test_module_doctest() -> None:
    result = doctest.testmod(io_module)
    assert result.attempted > 0 and result.failed == 0
