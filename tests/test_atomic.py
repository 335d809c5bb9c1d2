"""seqenc.atomic: the one way seqenc writes a file (and keeps the old one on failure)."""

from __future__ import annotations

import os
import stat

import pytest

from seqenc import atomic
from seqenc.io import open_writer


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o444)
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert mode(target) == 0o444
    target.chmod(0o640)
    atomic.copy_file(target, tmp_path / "copy.txt")
    atomic.copy_file(tmp_path / "copy.txt", target)
    assert mode(target) == 0o640


def test_a_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "new.txt") == 0o644


@pytest.mark.parametrize("fmt", ["npy", "jsonl", "parquet"])
def test_vector_writers_keep_the_mode_too(tmp_path, fmt):
    import numpy as np

    target = tmp_path / f"v.{fmt}"
    target.write_bytes(b"old")
    target.chmod(0o444)
    with open_writer(target) as w:
        w.write([1], np.ones((1, 4), np.float32))
    assert mode(target) == 0o444 and target.read_bytes() != b"old"


def test_errors_name_the_users_path_not_the_temporary_one(tmp_path):
    target = tmp_path / "no-such-dir" / "o.npy"
    with pytest.raises(FileNotFoundError) as info:
        atomic.AtomicFile(target)
    assert info.value.filename == str(target)
    assert ".tmp" not in str(info.value)


def test_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "o.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["o.txt"]


def test_failed_commit_names_the_users_path(tmp_path):
    target = tmp_path / "a-directory.txt"
    target.mkdir()
    (target / "x").write_text("")  # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError) as info, atomic.atomic_path(target) as tmp:
        tmp.write_text("x")
    assert info.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory.txt"]
