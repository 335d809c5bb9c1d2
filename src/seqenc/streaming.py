"""Stream a corpus through the model: read a chunk, encode it, append it; repeat.

The pipeline behind ``seqenc encode``: records from a reader (seqenc.io.readers), vectors to
a writer (seqenc.io.writers), memory bounded by one chunk whatever the corpus size. Only the
standard library is imported here, so the CLI stays quick to start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any


@dataclass
class EncodeOptions:
    batch_size: int = 32
    chunk_size: int = 4096
    pooling: str | None = None
    normalize: bool | None = None
    precision: str = "float32"
    dtype: str = "float32"
    truncate: bool = True
    skip_blank: bool = False  # leave out blank or whitespace-only texts (ids keep their numbers)


@dataclass
class EncodeStats:
    records: int = 0
    tokens: int = 0
    truncated: int = 0
    truncated_ids: list = field(default_factory=list)  # the first few, for the warning
    blank: int = 0  # blank or whitespace-only texts, encoded or (skip_blank) left out
    blank_ids: list = field(default_factory=list)  # the first few, for the warning
    seconds: float = 0.0
    nonzero: int = 0  # sparse vectors: the weights written


def _chunks(records: Iterable, size: int) -> Iterator[list]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


_SHOWN_IDS = 5  # ids quoted in a warning


def _first_ids(shown: list, more: Iterable) -> None:
    shown.extend(islice(more, _SHOWN_IDS - len(shown)))


def _blanks(chunk: list, opts: EncodeOptions, stats: EncodeStats) -> list:
    """Count the blank texts of ``chunk``; the chunk without them when they are skipped."""
    blank = [r for r in chunk if not r.text.strip()]
    stats.blank += len(blank)
    _first_ids(stats.blank_ids, (r.id for r in blank))
    return [r for r in chunk if r.text.strip()] if blank and opts.skip_blank else chunk



def _too_long(reader: Any, chunk: list, report: Any, limit: int, opts: EncodeOptions,
              stats: EncodeStats) -> list[int]:
    """Count the chunk's tokens and its records cut at ``limit``; with ``opts.truncate`` off,
    reject those records (the reader raises or skips them) and return the positions kept."""
    stats.tokens += report.n_tokens
    long = sorted(report.truncated_indices)
    if long and not opts.truncate:
        for i in long:
            reader.reject(reader.bad_record(chunk[i], f"longer than the model's {limit} tokens"))
        # A rejected record was encoded cut to exactly `limit` tokens: it adds none.
        stats.tokens -= len(long) * limit
        return sorted(set(range(len(chunk))) - set(long))
    stats.truncated += len(long)
    _first_ids(stats.truncated_ids, (chunk[i].id for i in long))
    return list(range(len(chunk)))

def row_spec(dimension: int, precision: str) -> tuple[int, str]:
    """(values per row, dtype) of ``precision`` vectors; binary packs 8 dimensions a byte."""
    width = dimension // 8 if precision in ("binary", "ubinary") else dimension
    dtype = {"int8": "int8", "binary": "int8", "uint8": "uint8", "ubinary": "uint8"}
    return width, dtype.get(precision, "float32")


def encode_stream(
    reader: Any,
    model: Any,
    writer: Any,
    opts: EncodeOptions,
    progress: Callable[[int], None] = lambda n: None,
) -> EncodeStats:
    """Read a chunk, encode it, append it; repeat. Memory is bounded by one chunk.

    Output row i is the i-th good record. int8/uint8 need one set of bucket ranges for the
    whole output, so they are calibrated on the first chunk (as sentence-transformers does on
    the embeddings of one call) and reused for every later chunk.
    """
    from seqenc.allocator import release_free_memory
    from seqenc.io.errors import InputError

    stats = EncodeStats()
    start = time.perf_counter()
    calibrate = opts.precision in ("int8", "uint8")
    ranges = None
    for chunk in _chunks(reader, opts.chunk_size):
        release_free_memory()  # batch shapes vary: without this the heap's free pieces pile up
        n_read = len(chunk)
        chunk = _blanks(chunk, opts, stats)
        if not chunk:
            progress(n_read)
            continue
        vectors, report = model.encode(
            [r.text for r in chunk],
            batch_size=opts.batch_size,
            pooling=opts.pooling,
            normalize=opts.normalize,
            precision="float32" if calibrate and ranges is None else opts.precision,
            dtype=opts.dtype,
            truncate=True,  # too-long records are handled here, per record, not per chunk
            return_report=True,
            **({"ranges": ranges} if ranges is not None else {}),
        )
        keep = _too_long(reader, chunk, report, model.max_seq_length, opts, stats)
        if len(keep) < len(chunk):
            chunk, vectors = [chunk[i] for i in keep], vectors[keep]
        if calibrate and ranges is None and chunk:
            from seqenc.quantize import quantization_ranges, quantize

            if len(chunk) < 2:
                raise InputError(
                    f"--precision {opts.precision} calibrates its ranges on the first chunk, "
                    "which needs at least two records",
                    file=reader.name,
                )
            ranges = quantization_ranges(vectors)
            vectors = quantize(vectors, opts.precision, ranges)
        writer.write([r.id for r in chunk], vectors)
        stats.records += len(chunk)
        progress(n_read)
    stats.seconds = time.perf_counter() - start
    return stats


def encode_sparse_stream(
    reader: Any,
    model: Any,
    writer: Any,
    opts: EncodeOptions,
    top_k: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> EncodeStats:
    """``encode_stream`` for SPLADE vectors (a seqenc.sparse.SparseEncoder, a
    seqenc.io.SparseWriter): the same chunks, blank texts, too-long records and counts;
    ``top_k`` keeps the heaviest weights of each text. ``stats.nonzero`` counts the weights
    written. The dense options (pooling, normalize, precision) do not apply."""
    from seqenc.allocator import release_free_memory

    stats = EncodeStats()
    start = time.perf_counter()
    for chunk in _chunks(reader, opts.chunk_size):
        release_free_memory()
        n_read = len(chunk)
        chunk = _blanks(chunk, opts, stats)
        if chunk:
            vectors, report = model.encode([r.text for r in chunk], opts.batch_size, top_k=top_k,
                                           return_report=True, dtype=opts.dtype)
            keep = _too_long(reader, chunk, report, model.max_seq_length, opts, stats)
            writer.write([chunk[i].id for i in keep], [vectors[i] for i in keep])
            stats.records += len(keep)
            stats.nonzero += sum(len(vectors[i]) for i in keep)
        progress(n_read)
    stats.seconds = time.perf_counter() - start
    return stats
