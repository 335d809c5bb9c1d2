"""Writers: each format round-trips chunk by chunk; failures leave no file and no temp file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqenc.io import (
    INPUT_EXTENSIONS,
    OUTPUT_EXTENSIONS,
    OUTPUT_FORMATS,
    ParquetWriter,
    SparseWriter,
    atomic_path,
    open_writer,
    output_format,
    sparse_format,
)
from seqenc.sparse import SparseVector

RNG = np.random.default_rng(0)


def read_back(path: Path) -> tuple[list, np.ndarray]:
    """(ids, vectors) from any output; npy stores no ids."""
    fmt = output_format(path)
    if fmt == "npy":
        return [], np.load(path)
    if fmt == "parquet":
        table = pq.read_table(path)
        vectors = np.array(table.column("vector").to_pylist()).reshape(table.num_rows, -1)
        return table.column("id").to_pylist(), vectors
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r["id"] for r in rows], np.array([r["embedding"] for r in rows])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("dtype", ["float32", "int8", "uint8"])
def test_round_trip_in_chunks(tmp_path, fmt, dtype):
    path = tmp_path / f"out.{fmt}"
    chunks = [RNG.standard_normal((n, 6)) * 50 for n in (3, 0, 4, 1)]
    chunks = [c.astype(dtype) for c in chunks]
    ids = [[1, 2, 3], [], [5, 6, 7, 8], [9]]
    with open_writer(path) as writer:
        for chunk_ids, chunk in zip(ids, chunks, strict=True):
            writer.write(chunk_ids, chunk)
    assert writer.count == 8
    got_ids, vectors = read_back(path)
    expected = np.concatenate(chunks)
    np.testing.assert_array_equal(vectors.astype(dtype), expected)
    if fmt == "npy":
        assert vectors.dtype == np.dtype(dtype)
        assert np.load(path, mmap_mode="r").shape == (8, 6)
    else:
        assert got_ids == [1, 2, 3, 5, 6, 7, 8, 9]
    assert leftovers(tmp_path) == [path.name]


def test_parquet_schema_and_string_ids(tmp_path):
    path = tmp_path / "out.parquet"
    with open_writer(path) as writer:
        writer.write(["a", "b"], np.ones((2, 3), np.float32))
        writer.write(["c"], np.zeros((1, 3), np.float32))
    table = pq.read_table(path)
    assert str(table.schema.field("id").type) == "string"
    assert str(table.schema.field("vector").type) == "fixed_size_list<element: float>[3]"
    assert pq.ParquetFile(path).num_row_groups == 2  # one row group per chunk, not one buffer
    assert table.column("id").to_pylist() == ["a", "b", "c"]


def test_float32_jsonl_is_exact(tmp_path):
    path = tmp_path / "out.jsonl"
    vectors = RNG.standard_normal((4, 5)).astype(np.float32)
    with open_writer(path) as writer:
        writer.write([0, 1, 2, 3], vectors)
    _, back = read_back(path)
    np.testing.assert_array_equal(back.astype(np.float32), vectors)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_empty_output_keeps_width_and_dtype(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    with open_writer(path, width=48, dtype="uint8"):
        pass
    if fmt == "npy":
        array = np.load(path)
        assert (array.shape, array.dtype) == ((0, 48), np.uint8)
    elif fmt == "parquet":
        table = pq.read_table(path)
        assert table.num_rows == 0
        assert str(table.schema.field("vector").type) == "fixed_size_list<element: uint8>[48]"
    else:
        assert path.read_text() == ""


class Boom(Exception):
    pass


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_failure_mid_write_leaves_nothing(tmp_path, fmt, error):
    path = tmp_path / f"out.{fmt}"
    with pytest.raises(error), open_writer(path) as writer:
        writer.write([1, 2], np.ones((2, 4), np.float32))
        raise error()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_failure_keeps_previous_output(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(b"previous run")
    with pytest.raises(ValueError, match="width 5"), open_writer(path) as writer:
        writer.write([1], np.ones((1, 4), np.float32))
        writer.write([2], np.ones((1, 5), np.float32))  # a chunk that does not fit
    assert path.read_bytes() == b"previous run"
    assert leftovers(tmp_path) == [path.name]


def test_success_replaces_previous_output_with_normal_permissions(tmp_path):
    path = tmp_path / "out.npy"
    path.write_bytes(b"previous run")
    with open_writer(path) as writer:
        writer.write([1], np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(np.load(path), np.ones((1, 2), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rows_must_match_ids(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(3, width\)"), open_writer(
        tmp_path / "out.npy"
    ) as writer:
        writer.write([1, 2, 3], np.ones((2, 4), np.float32))
    assert leftovers(tmp_path) == []


def test_unknown_output_extension():
    with pytest.raises(ValueError, match="unknown output extension '.csv'"):
        output_format("out.csv")


def test_atomic_path(tmp_path):
    target = tmp_path / "map.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"png")
        assert not target.exists()
    assert target.read_bytes() == b"png"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise Boom
    assert target.read_bytes() == b"png"
    assert leftovers(tmp_path) == ["map.png"]


def test_parquet_source_column(tmp_path):
    """The Ray engine's shards: the dense writer with a constant ``source`` column."""
    path = tmp_path / "part.parquet"
    with ParquetWriter(path, source="a.txt") as writer:
        writer.write([3, 4], np.ones((2, 3), np.float32))
    table = pq.read_table(path)
    assert table.schema.names == ["id", "vector", "source"]
    assert table.column("source").to_pylist() == ["a.txt", "a.txt"]


def sparse(indices: list[int], values: list[float]) -> SparseVector:
    return SparseVector(np.array(indices, np.int64), np.array(values, np.float32))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sparse_round_trip_in_chunks(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    chunks = [([1, 2], [sparse([7, 3], [0.5, 0.25]), sparse([], [])]), ([], []),
              ([5], [sparse([9], [1 / 3])])]
    with SparseWriter(path, decode=lambda v: {f"t{i}": float(w) for i, w in
                                              zip(v.indices, v.values, strict=True)}) as writer:
        for ids, vectors in chunks:
            writer.write(ids, vectors)
    assert writer.count == 3
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["tokens"] for r in rows] == [{"t7": 0.5, "t3": 0.25}, {},
                                               {"t9": rows[2]["values"][0]}]
    else:
        table = pq.read_table(path)
        assert table.schema.names == ["id", "indices", "values"]
        assert str(table.schema.field("indices").type) == "list<element: int32>"
        assert str(table.schema.field("values").type) == "list<element: float>"
        rows = table.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 5]
    assert [r["indices"] for r in rows] == [[7, 3], [], [9]]
    assert np.float32(rows[2]["values"][0]) == np.float32(1 / 3)  # exact float32
    assert leftovers(tmp_path) == [path.name]


def test_sparse_writer_empty_failure_and_refusals(tmp_path):
    with SparseWriter(tmp_path / "empty.parquet", source="x"):
        pass
    empty = pq.read_table(tmp_path / "empty.parquet")
    assert empty.num_rows == 0 and empty.schema.names == ["id", "indices", "values", "source"]
    with pytest.raises(Boom), SparseWriter(tmp_path / "half.jsonl") as writer:
        writer.write([1], [sparse([1], [1.0])])
        raise Boom
    with pytest.raises(ValueError, match="2 ids for 1 vectors"), \
            SparseWriter(tmp_path / "half.parquet") as writer:
        writer.write([1, 2], [sparse([1], [1.0])])
    assert leftovers(tmp_path) == ["empty.parquet"]
    with pytest.raises(ValueError, match="sparse vectors are written to"):
        sparse_format("out.npy")
    with pytest.raises(ValueError, match="parquet only"):
        SparseWriter(tmp_path / "x.jsonl", source="a.txt")


def test_extension_tables_are_public():
    assert OUTPUT_EXTENSIONS[".pq"] == "parquet" and INPUT_EXTENSIONS[".tsv"] == "tsv"
