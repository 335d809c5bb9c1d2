"""Streaming vector writers: .npy, .parquet and .jsonl, each written atomically.

A writer appends ``(ids, vectors)`` chunks as they are encoded, so memory stays bounded by one
chunk. It writes into a temporary file beside the output (``seqenc.atomic``) and renames it
over the output only when ``close()`` succeeds; on any exception (KeyboardInterrupt included)
the temporary file is removed and a previous output, if there was one, is left as it was.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.lib import format as npy_format

from seqenc.atomic import AtomicFile
from seqenc.choices import OUTPUT_FORMATS
from seqenc.extras import require

_EXTENSIONS = {
    ".npy": "npy",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def output_format(path: str | Path) -> str:
    """The output format for ``path``'s extension; ValueError for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = ", ".join(sorted(_EXTENSIONS))
        raise ValueError(
            f"unknown output extension {suffix or '(none)'!r}; expected one of {known}"
        )
    return _EXTENSIONS[suffix]


def require_writer(fmt: str) -> None:
    """MissingExtra now if writing ``fmt`` needs an extra that is not installed, so a command
    can refuse before its slow work rather than at the first write."""
    if fmt == "parquet":
        require("pyarrow.parquet", "writing parquet")


class VectorWriter(ABC):
    """Base writer: checks shapes, counts rows, and owns the atomic temporary file.

    ``width``/``dtype`` describe the rows when no chunk is ever written (empty input); the
    first chunk otherwise fixes them and later chunks must match.
    """

    format: ClassVar[str]

    def __init__(self, path: str | Path, *, width: int | None = None, dtype: Any = np.float32):
        self.path = Path(path)
        self.count = 0
        self.width = width
        self.dtype = np.dtype(dtype)
        self._started = False
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

    def write(self, ids: Sequence[int | str], vectors: np.ndarray) -> None:
        """Append one chunk: ``vectors[i]`` is the vector of record ``ids[i]``."""
        if self._closed:
            raise ValueError("write to a closed writer")
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

    def __enter__(self) -> VectorWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abstractmethod
    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _finish(self) -> None:
        """Write what only the end knows (row count, footer) and close the file."""

    @abstractmethod
    def _release(self) -> None:
        """Close the file without finishing it."""


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
    """Columns ``id`` (int64 or string) and ``vector`` (fixed_size_list), one row group a chunk."""

    format = "parquet"

    def __init__(self, path: str | Path, *, width: int | None = None, dtype: Any = np.float32):
        require_writer("parquet")
        self._writer = None
        super().__init__(path, width=width, dtype=dtype)

    def _open(self) -> None:
        pass  # pq.ParquetWriter needs the schema, so it opens on the first chunk

    def _schema(self, id_is_str: bool):
        pa = require("pyarrow", "writing parquet")

        value_type = pa.from_numpy_dtype(self.dtype)
        return pa.schema(
            [
                ("id", pa.string() if id_is_str else pa.int64()),
                ("vector", pa.list_(value_type, self.width or 0)),
            ]
        )

    def _write(self, ids: list[int | str], vectors: np.ndarray) -> None:
        pa = require("pyarrow", "writing parquet")
        pq = require("pyarrow.parquet", "writing parquet")

        if self._writer is None:
            schema = self._schema(isinstance(ids[0], str))
            self._writer = pq.ParquetWriter(self._file.tmp, schema)
        schema = self._writer.schema
        flat = pa.array(vectors.reshape(-1), type=schema.field("vector").type.value_type)
        table = pa.Table.from_arrays(
            [
                pa.array(ids, type=schema.field("id").type),
                pa.FixedSizeListArray.from_arrays(flat, self.width),
            ],
            schema=schema,
        )
        self._writer.write_table(table)

    def _finish(self) -> None:
        pq = require("pyarrow.parquet", "writing parquet")

        if self._writer is None:  # nothing written: still a valid, empty file
            self._writer = pq.ParquetWriter(self._file.tmp, self._schema(id_is_str=False))
        self._writer.close()

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.close()


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
