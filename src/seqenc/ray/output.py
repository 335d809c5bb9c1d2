"""The output directory of a Ray job: shards written into a staging directory, committed at
the end by renaming it into place.

Every chunk of every input becomes at most one shard, ``part-FFFFF-CCCCCC.parquet`` (input
file F, chunk C), written to a temporary name and renamed. The names are fixed by the input,
not by which worker ran or how often: when Ray retries a chunk after a worker died, the retry
rewrites the same shard, so no row appears twice. Sorting the names sorts the rows in input
order. The staging directory sits beside the output (same filesystem, so the final rename is
atomic); only a complete job renames it into place, with a ``_SUCCESS`` file that records the
counts. A job that fails or is interrupted leaves no output directory, or the previous one
untouched; a re-run starts from a fresh staging directory, so it cannot duplicate rows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from seqenc.atomic import atomic_path, write_text

SUCCESS = "_SUCCESS"


class OutputError(Exception):
    """The output directory cannot be used (exists with other files, or is a file)."""


def shard_name(file_index: int, chunk: int) -> str:
    return f"part-{file_index:05d}-{chunk:06d}.parquet"


def check_output_dir(out: Path) -> None:
    """Refuse a path that is a file, or a directory that holds something other than a
    previous seqenc output (which a new job replaces whole, never appends to)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SUCCESS).exists():
        raise OutputError(
            f"{out} is not empty and holds no {SUCCESS} from an earlier seqenc run; "
            "remove it or choose another output directory"
        )


def staging_dir(out: Path) -> Path:
    """A new, empty directory beside ``out`` for this job's shards; absolute, because the
    workers' working directory is not the driver's."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.seqenc-{secrets.token_hex(4)}.tmp")
    staging.mkdir()
    return staging


def write_shard(
    directory: str,
    file_index: int,
    chunk: int,
    ids: list,
    vectors: np.ndarray,
    source: str | None,
) -> str:
    """Write one shard atomically (temporary name, then rename); returns its file name.

    Columns as in ``seqenc encode -o x.parquet``: ``id`` (int64, or string with --id-field),
    ``vector`` (fixed-size list of the precision's dtype), and ``source`` when the job read
    several files.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    width = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    columns = {
        "id": pa.array(ids, type=pa.string() if isinstance(ids[0], str) else pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, width),
    }
    if source is not None:
        columns["source"] = pa.array([source] * len(ids), type=pa.string())
    name = shard_name(file_index, chunk)
    with atomic_path(Path(directory, name)) as tmp:
        pq.write_table(pa.table(columns), tmp)
    return name


def commit(staging: Path, out: Path, shards: dict[str, int], summary: dict[str, Any]) -> None:
    """Check the staging directory holds exactly the reported shards, then move it to ``out``.

    ``shards`` maps each shard name to the rows its worker reported; a shard on disk that no
    chunk reported, or one missing, means the job is not complete and nothing is committed.
    """
    import pyarrow.parquet as pq

    for leftover in staging.glob(".*"):  # temporary files of attempts that died mid-write
        leftover.unlink()
    on_disk = {p.name for p in staging.iterdir()}
    if on_disk != set(shards):
        raise RuntimeError(
            f"staging directory {staging} does not match the job's reports: "
            f"{sorted(on_disk ^ set(shards))[:5]}"
        )
    for name, rows in shards.items():
        found = pq.ParquetFile(staging / name).metadata.num_rows
        if found != rows:
            raise RuntimeError(f"shard {name} holds {found} rows, its worker reported {rows}")
    write_text(staging / SUCCESS, json.dumps(summary, indent=2) + "\n")
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.seqenc-old-{secrets.token_hex(4)}")
        os.replace(out, previous)
    os.replace(staging, out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
