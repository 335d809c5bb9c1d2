"""Streaming vector writers: .npy, .parquet and .jsonl, each written atomically.

A writer appends ``(ids, vectors)`` chunks as they are encoded, so memory stays bounded by one
chunk. It writes into a temporary file beside the output (``seqenc.atomic``) and renames it
over the output only when ``close()`` succeeds; on any exception (KeyboardInterrupt included)
the temporary file is removed and a previous output, if there was one, is left as it was.
The same writers make the Ray engine's shards (``ParquetWriter(..., source=...)``);
SPLADE vectors have theirs in seqenc.io.sparse_writers, on the same base.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.lib import format as npy_format

from seqenc.atomic import AtomicFile
from seqenc.choices import OUTPUT_FORMATS
from seqenc.extras import require

OUTPUT_EXTENSIONS = {  # extension -> output format
    ".npy": "npy",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def output_format(path: str | Path) -> str:
    """The output format for ``path``'s extension; ValueError for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        known = ", ".join(sorted(OUTPUT_EXTENSIONS))
        raise ValueError(
            f"unknown output extension {suffix or '(none)'!r}; expected one of {known}"
        )
    return OUTPUT_EXTENSIONS[suffix]


def require_writer(fmt: str) -> None:
    """MissingExtra now if writing ``fmt`` needs an extra that is not installed, so a command
    can refuse before its slow work rather than at the first write."""
    if fmt == "parquet":
        require("pyarrow.parquet", "writing parquet")


class AtomicWriter(ABC):
    """Owns the output's atomic temporary file and the row count: ``close()`` finishes the file
    and moves it into place, ``abort()`` (or an exception inside ``with``) drops it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.count = 0
        self._closed = False
        self._file = AtomicFile(self.path)
        try:
            self._open()
        except BaseException:
            self._file.discard()
            raise

    @abstractmethod
    def _open(self) -> None:
        """Open the temporary file for writing."""

    @abstractmethod
    def _finish(self) -> None:
        """Write what only the end knows (row count, footer) and close the file."""

    @abstractmethod
    def _release(self) -> None:
        """Close the file without finishing it."""

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
            self._file.commit()
        except BaseException:
            self._file.discard()
            raise

    def abort(self) -> None:
        """Drop everything written; the output path is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._release()
        finally:
            self._file.discard()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write to a closed writer")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ParquetRows:
    """The parquet half of the dense and sparse writers: ``pq.ParquetWriter`` opened on the
    first chunk (the ``id`` type comes from the first ids: int64, or string with --id-field),
    one row group a chunk, an optional constant ``source`` column (the Ray engine's shards of
    several inputs), and a valid empty file when no row came.

    ``columns()`` gives the (name, type) of the columns between ``id`` and ``source``; it is
    called when the schema is first needed.
    """

    def __init__(self, path: Path, columns: Callable[[], list], source: str | None = None):
        require_writer("parquet")
        self.path, self._columns, self.source = path, columns, source
        self._writer = None

    def _schema(self, id_is_str: bool):
        pa = require("pyarrow", "writing parquet")

        fields = [("id", pa.string() if id_is_str else pa.int64()), *self._columns()]
        if self.source is not None:
            fields.append(("source", pa.string()))
        return pa.schema(fields)

    def type(self, name: str):
        """The type of column ``name`` (after the first write)."""
        return self._writer.schema.field(name).type

    def open(self, ids: list) -> None:
        if self._writer is None:
            pq = require("pyarrow.parquet", "writing parquet")
            self._writer = pq.ParquetWriter(self.path, self._schema(isinstance(ids[0], str)))

    def write(self, ids: list, arrays: list) -> None:
        """One row group: ``ids`` and the arrays of the middle columns (``open`` first)."""
        pa = require("pyarrow", "writing parquet")

        schema = self._writer.schema
        columns = [pa.array(ids, type=schema.field("id").type), *arrays]
        if self.source is not None:
            columns.append(pa.array([self.source] * len(ids), type=pa.string()))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=schema))

    def finish(self) -> None:
        if self._writer is None:  # nothing written: still a valid, empty file
            pq = require("pyarrow.parquet", "writing parquet")
            self._writer = pq.ParquetWriter(self.path, self._schema(id_is_str=False))
        self._writer.close()

    def release(self) -> None:
        if self._writer is not None:
            self._writer.close()


class VectorWriter(AtomicWriter):
    """Base writer of dense vectors: checks shapes and dtypes chunk after chunk.

    ``width``/``dtype`` describe the rows when no chunk is ever written (empty input); the
    first chunk otherwise fixes them and later chunks must match.
    """

    format: ClassVar[str]

    def __init__(self, path: str | Path, *, width: int | None = None, dtype: Any = np.float32):
        self.width = width
        self.dtype = np.dtype(dtype)
        self._started = False
        super().__init__(path)

    def write(self, ids: Sequence[int | str], vectors: np.ndarray) -> None:
        """Append one chunk: ``vectors[i]`` is the vector of record ``ids[i]``."""
        self._check_open()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(
                f"expected vectors of shape ({len(ids)}, width), got {tuple(vectors.shape)}"
            )
        if not self._started:
            self.width, self.dtype = vectors.shape[1], vectors.dtype
            self._started = True
        elif (vectors.shape[1], vectors.dtype) != (self.width, self.dtype):
            raise ValueError(
                f"chunk has width {vectors.shape[1]} and dtype {vectors.dtype}; earlier chunks "
                f"had {self.width} and {self.dtype}"
            )
        if len(ids):
            self._write(list(ids), np.ascontiguousarray(vectors))
        self.count += len(ids)

    @abstractmethod
    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None: ...


class NpyWriter(VectorWriter):
    """A (N, width) .npy array; ids are not stored (row i is the i-th record written)."""

    format = "npy"
    _HEADER_BYTES = 128  # npy v1.0 header for any 2-D shape up to 10**18 rows (checked below)

    def _open(self) -> None:
        self._fh = open(self._file.tmp, "r+b")
        # The row count is only known at the end: reserve a fixed-size header now and write
        # the real one over it in _finish.
        self._fh.write(b"\0" * self._HEADER_BYTES)

    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None:
        self._fh.write(memoryview(vectors).cast("B"))

    def _finish(self) -> None:
        header = io.BytesIO()
        shape = (self.count, self.width if self.width is not None else 0)
        npy_format.write_array_header_1_0(
            header,
            {
                "descr": npy_format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": shape,
            },
        )
        if len(header.getvalue()) != self._HEADER_BYTES:  # pragma: no cover - numpy changed
            raise RuntimeError(f"npy header is {len(header.getvalue())} bytes, reserved 128")
        self._fh.seek(0)
        self._fh.write(header.getvalue())
        self._fh.close()

    def _release(self) -> None:
        self._fh.close()


class JsonlWriter(VectorWriter):
    """One ``{"id": ..., "embedding": [...]}`` object per line."""

    format = "jsonl"

    def _open(self) -> None:
        self._fh = open(self._file.tmp, "w", encoding="utf-8", newline="\n")

    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None:
        # tolist() gives Python floats that round-trip exactly back to float32.
        self._fh.writelines(
            json.dumps({"id": rid, "embedding": row}, ensure_ascii=False) + "\n"
            for rid, row in zip(ids, vectors.tolist(), strict=True)
        )

    def _finish(self) -> None:
        self._fh.close()

    def _release(self) -> None:
        self._fh.close()


class ParquetWriter(VectorWriter):
    """Columns ``id`` (int64 or string) and ``vector`` (fixed_size_list), one row group a
    chunk; ``source`` adds a constant string column of that name (the Ray engine's shards)."""

    format = "parquet"

    def __init__(self, path: str | Path, *, width: int | None = None, dtype: Any = np.float32,
                 source: str | None = None):
        self._source = source
        super().__init__(path, width=width, dtype=dtype)

    def _open(self) -> None:
        self._rows = ParquetRows(self._file.tmp, self._columns, self._source)

    def _columns(self) -> list:
        pa = require("pyarrow", "writing parquet")

        return [("vector", pa.list_(pa.from_numpy_dtype(self.dtype), self.width or 0))]

    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None:
        pa = require("pyarrow", "writing parquet")

        self._rows.open(ids)
        flat = pa.array(vectors.reshape(-1), type=self._rows.type("vector").value_type)
        self._rows.write(ids, [pa.FixedSizeListArray.from_arrays(flat, self.width)])

    def _finish(self) -> None:
        self._rows.finish()

    def _release(self) -> None:
        self._rows.release()


_WRITERS: dict[str, type[VectorWriter]] = {
    "npy": NpyWriter,
    "jsonl": JsonlWriter,
    "parquet": ParquetWriter,
}


def open_writer(
    path: str | Path, fmt: str | None = None, *, width: int | None = None, dtype: Any = np.float32
) -> VectorWriter:
    """A writer for ``path``; the format comes from ``fmt`` or the extension."""
    fmt = fmt or output_format(path)
    if fmt not in _WRITERS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {OUTPUT_FORMATS}")
    return _WRITERS[fmt](path, width=width, dtype=dtype)
