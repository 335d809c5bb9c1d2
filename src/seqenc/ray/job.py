"""``encode_dataset``: the single-machine encode pipeline, run on Ray Data.

    inputs --read tasks (seqenc.io readers)--> chunks --actor pool (one model each)--> shards

The read stage cuts every input file into chunks with the same reader ``seqenc encode`` uses;
each chunk goes to one actor of a pool (``map_batches`` with an actor class), which loaded
the model once and runs the same ``encode_stream`` on it (``encode_sparse_stream`` with a
SPLADE model for --sparse), then writes the chunk's shard (seqenc.ray.output). Only a small
report per chunk comes back to the driver: it never holds vectors, so it can be a laptop
joined to a cluster.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from seqenc.exits import ModelLoadError
from seqenc.io.errors import InputError
from seqenc.io.readers import RecordReader
from seqenc.streaming import EncodeOptions, encode_sparse_stream, encode_stream

from .inputs import InputFile, ReadOptions, read_chunks
from .output import write_shard

CALIBRATED = ("int8", "uint8")  # precisions whose buckets come from the first chunk


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs; pickled once into each read task and actor."""

    inputs: tuple[InputFile, ...]
    read: ReadOptions
    encode: EncodeOptions
    staging: str
    model: str | None = None
    device: str = "cpu"
    threads: int = 1
    max_length: int | None = None
    ranges: Any = None  # (2, D) int8/uint8 buckets, calibrated before the job
    sparse: bool = False  # SPLADE vectors from a *ForMaskedLM model (seqenc.sparse)
    top_k: int | None = None  # sparse: the heaviest weights kept per text


@dataclass
class ChunkReport:
    file: int
    chunk: int
    records: int = 0
    read: int = 0  # records read, bad ones included: what the progress bar counts
    tokens: int = 0
    truncated: int = 0
    truncated_ids: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # the skip messages, in input order
    blank: int = 0
    shard: str | None = None
    dimension: int = 0  # sparse: the vocabulary size
    nonzero: int = 0  # sparse: the weights written


class _Collect:
    """A writer for encode_stream that keeps the chunk's ids and vectors in memory: (B, D)
    arrays, or lists of sparse vectors."""

    def __init__(self) -> None:
        self.ids: list = []
        self.vectors: list = []

    def write(self, ids: list, vectors: Any) -> None:
        self.ids.extend(ids)
        self.vectors.append(vectors)


def load_model(spec: JobSpec) -> Any:
    """The model of one actor: loaded once, with the job's threads and length limit; a
    SparseEncoder for a --sparse job (the single-machine command's loader and messages)."""
    from seqenc.threads import set_threads

    set_threads(spec.threads)
    try:
        from seqenc.allocator import tune_memory
        from seqenc.model import SentenceEncoder, resolve_device
        from seqenc.search_cli import load_sparse_encoder

        tune_memory()
        device = resolve_device(spec.device)
        if spec.sparse:
            model = load_sparse_encoder(spec.model, device)
        else:
            model = SentenceEncoder.from_pretrained(spec.model, device=device)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load model {spec.model or 'default'!r}: {e}") from e
    if spec.max_length is not None:
        if spec.max_length > model.max_seq_length:
            raise ValueError(
                f"--max-length {spec.max_length} is longer than the model's limit of "
                f"{model.max_seq_length} tokens"
            )
        if spec.sparse:
            model.tokenizer.set_max_length(spec.max_length)
        else:
            model.max_seq_length = spec.max_length
    return model


def _chunk_reader(spec: JobSpec, source: InputFile, records: list, messages: list) -> Any:
    """A RecordReader over one chunk's records, so that encode_stream rejects a too-long
    record (--no-truncate) exactly as on one machine: raise, or skip with a message."""
    return RecordReader(
        iter(records),
        name=source.name,
        fmt=source.format,
        on_error=spec.read.on_error,
        warn=messages.append,
        field=None if source.format == "txt" else spec.read.field,
    )


def encode_chunk(model: Any, spec: JobSpec, file: int, chunk: int, payload: bytes) -> ChunkReport:
    """Encode one chunk with ``encode_stream`` or ``encode_sparse_stream`` (too-long records
    rejected or truncated as on one machine), quantise with the job's ranges, and write its
    shard."""
    records, messages = pickle.loads(payload)
    source = spec.inputs[file]
    reader = _chunk_reader(spec, source, records, messages)
    opts = spec.encode
    if opts.precision in CALIBRATED:
        opts = replace(opts, precision="float32")  # quantised below, with the job's ranges
    sink = _Collect()
    if spec.sparse:
        stats = encode_sparse_stream(reader, model, sink, opts, spec.top_k)
    else:
        stats = encode_stream(reader, model, sink, opts)
    report = ChunkReport(
        file, chunk, stats.records, len(records) + len(messages) - reader.skipped,
        stats.tokens, stats.truncated, stats.truncated_ids, messages, blank=stats.blank,
        dimension=model.vocab_size if spec.sparse else model.dimension, nonzero=stats.nonzero,
    )
    if stats.records:
        if spec.sparse:
            vectors = [v for part in sink.vectors for v in part]
        else:
            vectors = np.concatenate(sink.vectors)
        if spec.encode.precision in CALIBRATED:
            from seqenc.quantize import quantize

            vectors = quantize(vectors, spec.encode.precision, spec.ranges)
        several = source.name if len(spec.inputs) > 1 else None
        report.shard = write_shard(spec.staging, file, chunk, sink.ids, vectors, several,
                                   sparse=spec.sparse)
    return report


class EncodeActor:
    """One member of the actor pool: loads the model once, then encodes chunk after chunk."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.model = load_model(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        reports = [
            encode_chunk(self.model, self.spec, int(f), int(c), bytes(p))
            for f, c, p in zip(batch["file"], batch["chunk"], batch["payload"], strict=True)
        ]
        return {"report": [json.dumps(r.__dict__) for r in reports]}


def read_stage(batch: dict[str, np.ndarray], spec: JobSpec):
    """Ray Data read stage: one input file in, one row per chunk out (a generator, so a big
    file streams through in bounded memory)."""
    for index in batch["file"]:
        for number, payload in read_chunks(spec.inputs[int(index)], spec.read):
            yield {"file": [int(index)], "chunk": [number], "payload": [payload]}


def probe(spec: JobSpec) -> Any:
    """Load the model once in a Ray task before the actor pool starts, so that a model that
    cannot load (or a --max-length beyond its limit) is one clear error rather than actors
    failing in a loop; for int8/uint8 also return the bucket ranges (else None)."""
    model = load_model(spec)
    return calibrate(model, spec) if spec.encode.precision in CALIBRATED else None


def calibrate(model: Any, spec: JobSpec) -> np.ndarray:
    """int8/uint8 bucket ranges from the first chunk, as ``seqenc encode`` computes them."""
    from seqenc.quantize import quantization_ranges

    for source in spec.inputs:
        for _, payload in read_chunks(source, spec.read):
            records, messages = pickle.loads(payload)
            report = _Collect()
            reader = _chunk_reader(spec, source, records, messages)
            encode_stream(reader, model, report, replace(spec.encode, precision="float32"))
            if not report.ids:
                continue
            if len(report.ids) < 2:
                raise InputError(
                    f"--precision {spec.encode.precision} calibrates its ranges on the first "
                    "chunk, which needs at least two records",
                    file=source.name,
                )
            return quantization_ranges(np.concatenate(report.vectors))
    return np.zeros((2, model.dimension), np.float32)  # no records: nothing to quantise


# -- the driver ------------------------------------------------------------------------------


@dataclass
class Plan:
    actors: int
    threads: int
    cpus: float


def plan_resources(cpus: float, actors: int | None, threads: int | None) -> Plan:
    """Actors x threads filling the cluster's CPUs: by default 2 threads an actor (see
    benchmarks/RESULTS.md), as many actors as fit."""
    total = max(1, int(cpus))
    if threads is None:
        threads = max(1, total // actors) if actors else min(2, total)
    if actors is None:
        actors = max(1, total // threads)
    return Plan(actors, threads, cpus)


def run_job(
    ray: Any,
    spec: JobSpec,
    plan: Plan,
    on_report: Callable[[ChunkReport], None],
) -> None:
    """Build the Ray Data pipeline and feed each chunk's report to ``on_report``."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... and Ray Data would warn, once per process, that its own bars are off (below)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.target_max_block_size
    ctx.enable_progress_bars = False  # the CLI draws its own, in records
    # One block per chunk. Ray Data packs what a task yields into blocks of up to 128 MiB:
    # the chunks of a whole file would then travel as one block to one actor, the others
    # idle and no report (progress) coming back until it finished.
    ctx.target_max_block_size = 1
    try:  # each dataset keeps a copy of the context; the caller's is restored below
        files = ray.data.from_items(
            [{"file": s.index} for s in spec.inputs], override_num_blocks=len(spec.inputs)
        )
        chunks = files.map_batches(
            read_stage,
            fn_kwargs={"spec": spec},
            batch_size=1,
            num_cpus=0,  # reading is light next to encoding: it must not wait for a free core
            compute=ray.data.TaskPoolStrategy(size=max(1, min(len(spec.inputs), plan.actors))),
        )
        reports = chunks.map_batches(
            EncodeActor,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            num_cpus=plan.threads,
            num_gpus=1 if spec.device == "cuda" else 0,
            # Ray Data's defaults (max_restarts=-1, max_task_retries=-1) replace an actor
            # that died and retry its chunk elsewhere; the retry rewrites the same shard.
            compute=ray.data.ActorPoolStrategy(size=plan.actors),
        )
    finally:
        ctx.enable_progress_bars, ctx.target_max_block_size = saved
    for row in reports.iter_rows():
        on_report(ChunkReport(**json.loads(row["report"])))


def unwrap(error: BaseException) -> BaseException | None:
    """The seqenc error inside a Ray task failure (InputError, ModelLoadError, ValueError
    about an option), rebuilt without Ray's traceback text; None if there is none."""
    seen = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, InputError):
            return InputError(e.reason, file=e.file, line=e.line, field=e.field, unit=e.unit)
        if isinstance(e, ModelLoadError):
            return ModelLoadError(str(e.args[0]) if e.args else str(e))
        if isinstance(e, ValueError) and str(e).startswith("--max-length"):
            return ValueError(str(e).splitlines()[0])
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None
