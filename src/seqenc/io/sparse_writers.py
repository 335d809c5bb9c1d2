"""Streaming writers of SPLADE vectors (seqenc.sparse.SparseVector), each written atomically.

One row per record, the non-zero weights only:

- ``.jsonl``: ``{"id", "indices": [...], "values": [...], "tokens": {token: weight}}``
  (``tokens`` when the writer is given the model's ``decode``);
- ``.parquet``: columns ``id`` (int64, or string with --id-field), ``indices``
  (list<int32>), ``values`` (list<float32>), and ``source`` when asked (the Ray engine's
  shards of several inputs).

``seqenc encode --sparse`` writes one file with these; ``--engine ray --sparse`` one shard per
chunk, so both outputs read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seqenc.extras import require

from .writers import AtomicWriter, ParquetRows

SPARSE_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                     ".pq": "parquet"}


def sparse_format(path: str | Path) -> str:
    """The sparse output format for ``path``'s extension; ValueError for another one."""
    suffix = Path(path).suffix.lower()
    if suffix not in SPARSE_EXTENSIONS:
        raise ValueError(f"sparse vectors are written to "
                         f"{' or '.join(sorted(set(SPARSE_EXTENSIONS)))}, not "
                         f"{suffix or '(no extension)'!r}")
    return SPARSE_EXTENSIONS[suffix]


class SparseWriter(AtomicWriter):
    """Appends chunks of ``(ids, sparse vectors)``; memory stays bounded by one chunk."""

    def __init__(self, path: str | Path, fmt: str | None = None, *,
                 decode: Callable[[Any], dict[str, float]] | None = None,
                 source: str | None = None):
        self.format = fmt or sparse_format(path)
        self._decode, self._source = decode, source
        if self.format == "parquet":
            require("pyarrow.parquet", "writing parquet")  # before the temporary file
        elif source is not None:
            raise ValueError("a source column is written to parquet only")
        super().__init__(path)

    def _open(self) -> None:
        if self.format == "jsonl":
            self._fh = open(self._file.tmp, "w", encoding="utf-8", newline="\n")
        else:
            self._rows = ParquetRows(self._file.tmp, self._columns, self._source)

    @staticmethod
    def _columns() -> list:
        pa = require("pyarrow", "writing parquet")

        return [("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32()))]

    def write(self, ids: Sequence[int | str], vectors: Sequence[Any]) -> None:
        """Append one chunk: ``vectors[i]`` (indices, values) is the vector of ``ids[i]``."""
        self._check_open()
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        ids = list(ids)
        if self.format == "jsonl":
            for id_, v in zip(ids, vectors, strict=True):
                row = {"id": id_, "indices": v.indices.tolist(),
                       "values": v.values.tolist()}  # exact float32 values
                if self._decode is not None:
                    row["tokens"] = self._decode(v)
                self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            pa = require("pyarrow", "writing parquet")

            self._rows.open(ids)
            self._rows.write(ids, [
                pa.array([v.indices.astype("int32") for v in vectors], type=pa.list_(pa.int32())),
                pa.array([v.values for v in vectors], type=pa.list_(pa.float32())),
            ])
        self.count += len(ids)

    def _finish(self) -> None:
        if self.format == "jsonl":
            self._fh.close()
        else:
            self._rows.finish()

    def _release(self) -> None:
        if self.format == "jsonl":
            self._fh.close()
        else:
            self._rows.release()
