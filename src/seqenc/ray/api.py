"""``encode_dataset``: what ``seqenc encode --engine ray`` calls, usable from Python."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqenc.choices import (
    DEVICES,
    ENCODE_DTYPES,
    INPUT_FORMATS,
    ON_ERROR,
    POOLINGS,
    PRECISIONS,
    check_choice,
)
from seqenc.extras import require
from seqenc.streaming import EncodeOptions

from .inputs import ReadOptions, plan_inputs
from .job import (
    ChunkReport,
    JobSpec,
    plan_resources,
    probe,
    run_job,
    unwrap,
)
from .output import check_output_dir, clean_stale, commit, discard, staging_dir
from .runtime import start_runtime, stop_runtime


@dataclass
class RayEncodeResult:
    """What a finished job wrote; the same counts as the single-machine summary."""

    output: Path
    records: int = 0
    tokens: int = 0
    truncated: int = 0
    truncated_ids: list = field(default_factory=list)  # the first few, for the warning
    skipped: int = 0
    blank: int = 0  # blank or whitespace-only texts, encoded or (skip_blank) left out
    seconds: float = 0.0
    shards: int = 0
    files: int = 0
    dimension: int = 0  # sparse: the vocabulary size
    nonzero: int = 0  # sparse: the weights written
    actors: int = 0
    threads: int = 0


def encode_dataset(
    inputs: str | Sequence[str],
    output_dir: str | Path,
    *,
    model: str | None = None,
    field: str = "text",
    id_field: str | None = None,
    format: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 4096,
    pooling: str | None = None,
    normalize: bool | None = None,
    precision: str = "float32",
    dtype: str = "float32",
    max_length: int | None = None,
    truncate: bool = True,
    on_error: str = "raise",
    skip_blank: bool = False,
    actors: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    device: str = "cpu",
    sparse: bool = False,
    top_k: int | None = None,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RayEncodeResult:
    """Encode every record of ``inputs`` (files, directories, globs) into parquet shards in
    ``output_dir``, on a local Ray runtime or the cluster at ``address`` ("auto", "ray://...").

    Ids, vectors and bad-record handling are those of ``seqenc encode`` on each file; the
    shards hold ``id``, ``vector`` and, with several input files, ``source``. ``sparse``
    encodes SPLADE vectors with the *ForMaskedLM ``model`` instead (as ``seqenc encode
    --sparse``): shards hold ``id``, ``indices``, ``values`` (and ``source``), ``top_k`` keeps
    the heaviest weights per text; pooling, normalize and precision do not apply. ``actors``
    encoding actors x ``threads`` PyTorch threads (and reserved CPUs) per actor default to
    filling the cluster's CPUs. The directory appears only when the whole job succeeded;
    first, what jobs killed outright left beside it is removed (seqenc.ray.output).
    ``progress(n)`` is told of every n records read, ``warn`` gets the messages of skipped
    records and of removed leftovers. Raises InputError for bad input, ModelLoadError,
    MissingExtra without Ray.
    """
    ray = require("ray", "the ray engine")
    require("ray.data", "the ray engine")
    for name, value, choices in (
        ("on_error", on_error, ON_ERROR), ("precision", precision, PRECISIONS),
        ("dtype", dtype, ENCODE_DTYPES), ("device", device, DEVICES),
    ):
        check_choice(name, value, choices)
    if pooling is not None:
        check_choice("pooling", pooling, POOLINGS)
    if format is not None:
        check_choice("format", format, INPUT_FORMATS)
    _check_sparse(sparse, model, top_k, pooling, normalize, precision, dtype)
    if dtype == "int8":
        _check_int8(device)
    warn = warn or (lambda message: None)
    read = ReadOptions(field, id_field, on_error, chunk_size)
    files = plan_inputs([inputs] if isinstance(inputs, str) else list(inputs), format, read)
    out = Path(output_dir)
    for message in clean_stale(out):  # what drivers killed outright left beside it
        warn(message)
    check_output_dir(out)

    started = start_runtime(ray, address, warn=warn)
    staging = None
    try:
        staging = staging_dir(out)
        plan = plan_resources(ray.cluster_resources().get("CPU", 1), actors, threads)
        spec = JobSpec(
            tuple(files), read,
            EncodeOptions(batch_size, chunk_size, pooling, normalize, precision, dtype, truncate,
                          skip_blank),
            str(staging.path), model, device, plan.threads, max_length,
            sparse=sparse, top_k=top_k,
        )
        start = time.perf_counter()
        # retried only if its worker dies (no side effects; retry_exceptions stays off, so a
        # model that cannot load is still one clear error): a lost worker no longer fails
        # the job before the actor pool, which restarts its own
        task = ray.remote(num_cpus=plan.threads, max_retries=2)(probe)
        spec = JobSpec(**{**spec.__dict__, "ranges": _get(ray, task.remote(spec))})
        reports: dict[tuple[int, int], ChunkReport] = {}

        def on_report(report: ChunkReport) -> None:
            if (report.file, report.chunk) in reports:
                return  # a retried chunk: its shard was rewritten in place
            reports[report.file, report.chunk] = report
            for message in report.skipped:
                warn(message)
            if progress is not None and report.read:
                progress(report.read)

        try:
            run_job(ray, spec, plan, on_report)
        except Exception as e:
            cause = unwrap(e)
            if cause is None:
                raise
            raise cause from None
        result = _summarise(out, files, sorted(reports.values(), key=lambda r: (r.file, r.chunk)))
        result.seconds = time.perf_counter() - start
        result.actors, result.threads = plan.actors, plan.threads
        shards = {r.shard: r.records for r in reports.values() if r.shard}
        commit(staging, out, shards, {
            "records": result.records, "tokens": result.tokens, "truncated": result.truncated,
            "skipped": result.skipped, "blank": result.blank, "seconds": round(result.seconds, 3),
            "files": [f.name for f in files], "shards": len(shards),
            "dimension": result.dimension, "dtype": dtype,
            **({"sparse": True, "top_k": top_k, "nonzero": result.nonzero} if sparse
               else {"precision": precision}),
            "model": model or "default", "actors": plan.actors, "threads": plan.threads,
        })
    except BaseException:
        if started:  # stop the workers first, so none writes into the staging directory later
            stop_runtime(ray)
            started = False
        if staging is not None:
            discard(staging)
        raise
    finally:
        if started:
            stop_runtime(ray)
    return result


def _check_sparse(sparse: bool, model: str | None, top_k: int | None, pooling: str | None,
                  normalize: bool | None, precision: str, dtype: str) -> None:
    """The options that a sparse (or a dense) job cannot take, refused before Ray starts."""
    if not sparse:
        if top_k is not None:
            raise ValueError("top_k applies to sparse vectors only")
        return
    if model is None:  # the single-machine loader's error, without starting Ray for it
        from seqenc.search_cli import load_sparse_encoder

        load_sparse_encoder(model)
    if isinstance(top_k, bool) or not (top_k is None or isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    for name, value, default in (("pooling", pooling, None), ("normalize", normalize, None),
                                 ("precision", precision, "float32")):
        if value != default:
            raise ValueError(f"{name} applies to dense vectors, not sparse ones")


def _check_int8(device: str) -> None:
    """dtype int8 (every actor quantises its copy of the model as encode(dtype="int8") does),
    refused before Ray starts where it cannot run: on a GPU, or where this machine has
    neither our int8 GEMMs nor VNNI (seqenc.int8.check_int8). The actors check again on theirs."""
    if device == "cuda":  # "auto": each actor's int8_encoder refuses a GPU itself
        raise ValueError("dtype int8 runs on the CPU only, not on device 'cuda'")
    from seqenc.int8 import check_int8

    check_int8()


def _get(ray, ref):
    try:
        return ray.get(ref)
    except Exception as e:
        cause = unwrap(e)
        if cause is None:
            raise
        raise cause from None


def _summarise(out: Path, files: list, reports: list[ChunkReport]) -> RayEncodeResult:
    result = RayEncodeResult(out, files=len(files))
    for r in reports:
        result.records += r.records
        result.tokens += r.tokens
        result.truncated += r.truncated
        result.skipped += len(r.skipped)
        result.blank += r.blank
        result.shards += r.shard is not None
        result.dimension = result.dimension or r.dimension
        result.nonzero += r.nonzero
        if len(result.truncated_ids) < 5:
            prefix = f"{files[r.file].name}:" if len(files) > 1 else ""
            wanted = r.truncated_ids[: 5 - len(result.truncated_ids)]
            result.truncated_ids.extend(f"{prefix}{i}" if prefix else i for i in wanted)
    return result
