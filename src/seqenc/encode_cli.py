"""``seqenc encode``: texts in a file (or stdin) to one vector per record, in a file.

The command declares its ~27 options (inputs, model, pooling, precision, sparse output, the Ray
engine) as click decorators, in one place, and reads as its steps: choose the output, open the
input, load the model, stream chunks from one to the other, report. Each step is a short
function below it; the streaming itself is seqenc.streaming's, the stderr seqenc.console's.
Click and the standard library only at import time, as for every command (seqenc.cli).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from seqenc.choices import (
    DEVICES,
    ENCODE_DTYPES,
    ENGINES,
    INPUT_FORMATS,
    ON_ERROR,
    POOLINGS,
    PRECISIONS,
)
from seqenc.console import EncodeConsole
from seqenc.exits import EXIT_CODES, output_exit_codes, sigterm_as_interrupt
from seqenc.streaming import EncodeOptions, encode_stream, row_spec


@click.command(epilog=EXIT_CODES)
@click.argument("sources", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="Output file: .npy, .parquet or .jsonl (default: INPUT with .npy; required for stdin). "
    "Missing directories are created; an existing file is replaced. With --engine ray: the "
    "output directory.",
)
@click.option("--force", is_flag=True,
              help="Without -o: replace an existing INPUT.npy (otherwise refused).")
@click.option("--model", "model_name", metavar="NAME|PATH", help="Model name or directory.")
@click.option("--field", default="text", show_default=True, help="Text field/column.")
@click.option("--id-field", help="Field/column with record ids (default: line or row number).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(INPUT_FORMATS),
    help="Input format (default: from the extension; stdin is txt).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Records read, encoded and written at a time.",
)
@click.option("--normalize/--no-normalize", default=None, help="L2-normalise (default: model's).")
@click.option("--pooling", type=click.Choice(POOLINGS), help="Pooling (default: the model's).")
@click.option(
    "--dtype",
    type=click.Choice(ENCODE_DTYPES),
    default="float32",
    show_default=True,
    help="Compute dtype; int8 = int8 weights and activations (x86-64 CPUs with AVX2).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Stored vector precision; binary/ubinary pack 8 dimensions per byte.",
)
@click.option("--max-length", type=click.IntRange(min=2), help="Truncate at this many tokens.")
@click.option("--no-truncate", is_flag=True, help="Treat texts longer than the limit as bad input.")
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR),
    default="raise",
    show_default=True,
    help="Stop at the first bad record, or report and skip it.",
)
@click.option("--skip-blank", is_flag=True,
              help="Leave out blank or whitespace-only texts (counted and warned about either "
                   "way; the other records keep their ids).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="PyTorch intra-op threads [default: PyTorch's, one per core]. With --engine "
                   "ray: threads per actor, each actor reserving as many Ray CPUs [default: with "
                   "--actors, the cluster's CPUs / --actors; else 2, or 1 on a one-CPU "
                   "cluster].")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True, help="Where the encoder runs; auto = cuda when a GPU is visible.")
@click.option("--sparse", is_flag=True,
              help="SPLADE sparse vectors from a *ForMaskedLM --model, to .jsonl or .parquet "
                   "(README: Reranking and sparse vectors).")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="With --sparse: keep the K heaviest weights per text.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="ray: encode files, directories and globs on Ray Data (seqenc[ray]) into "
              "parquet shards in the -o directory.")
@click.option("--ray-address", metavar="auto|ray://HOST:PORT",
              help="Join this Ray cluster (default: start a local Ray runtime, whose workers run "
                   "at this process's niceness rather than Ray's +15 unless "
                   "RAY_worker_niceness is set).")
@click.option("--actors", type=click.IntRange(min=1),
              help="Ray encoding actors (default: the cluster's CPUs / --threads).")
@output_exit_codes
def encode(sources: tuple[str, ...], output: str | None, force: bool, model_name: str | None,
           max_length: int | None, threads: int | None, device: str, quiet: bool, engine: str,
           ray_address: str | None, actors: int | None, sparse: bool, top_k: int | None,
           **options: Any) -> None:
    """Encode the texts in INPUT (a file, or - for stdin) and write one vector per record.

    \b
    Input formats, by extension or --format:
      .txt      one text per line; id = line number
      .jsonl    one JSON object per line, text in --field; id = line number
      .csv      header row, text in column --field; id = row number
      .tsv      like csv, tab-separated, no quoting
      .parquet  string column --field; id = row number
    With --id-field, ids come from that field (as strings).

    \b
    Output formats, by the extension of -o:
      .npy      (N, D) array; row i is the i-th record encoded
      .parquet  columns id and vector (fixed-size list)
      .jsonl    {"id": ..., "embedding": [...]} per line
    The output appears only when everything succeeded; until then a previous file is kept.

    \b
    --engine ray: INPUT... are files, directories or globs; -o names a directory that gets
    parquet shards (id, vector, and source with several files) and a _SUCCESS file.

    \b
    With --sparse: .jsonl rows {"id", "indices", "values", "tokens"}, or .parquet columns id,
    indices, values (with --engine ray: shards with these columns, and source).
    """
    if top_k is not None and not sparse:
        raise click.UsageError("--top-k applies to --sparse only")
    if sparse:
        _refuse_dense_options(options)
    if engine == "ray":  # seqenc/ray/command.py
        from seqenc.ray.command import encode_on_ray

        return encode_on_ray(sources, output, quiet=quiet, model=model_name, threads=threads,
                             max_length=max_length, device=device, address=ray_address,
                             actors=actors, sparse=sparse, top_k=top_k, **options)
    if len(sources) > 1 or ray_address or actors:
        raise click.UsageError("several inputs, --ray-address and --actors need --engine ray")
    source = sources[0]
    if sparse:
        from seqenc.search_cli import encode_sparse

        return encode_sparse(source, output, model_name, options["field"], options["id_field"],
                             options["fmt"], options["batch_size"], options["chunk_size"],
                             max_length, options["no_truncate"], options["on_error"], device,
                             top_k, quiet, skip_blank=options["skip_blank"],
                             dtype=options["dtype"], threads=threads)
    out = _choose_output(source, output, force)
    device = device_option(device)
    opts = _encode_options(options, truncate=not options.pop("no_truncate"))
    console = EncodeConsole(quiet)
    with _open_input(source, options, console.warn) as reader:
        _make_parent(out)  # fail before the slow model load
        model = _load_encoder(model_name, device, threads, max_length)
        stats = _stream(reader, model, out, opts, console)
    console.report(stats, reader, model, out, opts)


def _refuse_dense_options(options: dict[str, Any]) -> None:
    """--sparse writes SPLADE weights: the options that shape dense vectors are a usage error
    rather than silently ignored."""
    for flag, name, default in (("--pooling", "pooling", None), ("--normalize", "normalize", None),
                                ("--precision", "precision", "float32")):
        if options.get(name) != default:
            raise click.UsageError(f"{flag} applies to dense vectors, not --sparse")
    if options.get("dtype") == "int8":
        raise click.UsageError("--dtype int8 applies to dense vectors, not --sparse")


def _choose_output(source: str, output: str | None, force: bool) -> Path:
    """-o, or INPUT with .npy; checked before any work: known format, its extra installed, not
    the input itself, and a derived name never replaces a file unless --force says so."""
    from seqenc.io import output_format
    from seqenc.io.writers import require_writer

    if output is None and source == "-":
        raise click.UsageError("-o/--output is required when reading stdin")
    out = Path(output) if output is not None else Path(source).with_suffix(".npy")
    if out.is_dir():
        raise click.BadParameter(f"{out} is a directory", param_hint="-o/--output")
    try:
        require_writer(output_format(out))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="-o/--output") from None
    if source != "-" and Path(source).exists() and out.exists() and out.samefile(source):
        raise click.BadParameter("the output would overwrite the input", param_hint="-o/--output")
    if output is None and out.exists() and not force:
        raise click.UsageError(
            f"{out} already exists; pass -o {out} (or --force) to replace it, or -o another "
            "file"
        )
    return out


def device_option(name: str) -> str:
    """--device's value as "cpu" or "cuda" (seqenc.resolve.resolve_device), or a usage error."""
    if name == "cpu":  # no torch import before it is needed
        return name
    from seqenc.resolve import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None


def _encode_options(options: dict[str, Any], truncate: bool) -> EncodeOptions:
    """Pop the options that shape the encoding; what is left describes the input."""
    names = ("batch_size", "chunk_size", "pooling", "normalize", "precision", "dtype",
             "skip_blank")
    return EncodeOptions(**{name: options.pop(name) for name in names}, truncate=truncate)


def _open_input(source: str, options: dict[str, Any], warn: Callable[[str], None]) -> Any:
    from seqenc.io import open_records

    return open_records(source, options["fmt"], field=options["field"],
                        id_field=options["id_field"], on_error=options["on_error"], warn=warn)


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.FileError(str(out), hint=_os_reason(e)) from None


def _load_encoder(name: str | None, device: str, threads: int | None,
                  max_length: int | None) -> Any:
    from seqenc import cli  # its load_model: the CLI's one way to a model (tests replace it)
    from seqenc.threads import set_threads

    set_threads(threads)
    model = cli.load_model(name, device)
    if max_length is not None:
        if max_length > model.max_seq_length:
            raise click.BadParameter(
                f"{max_length} is longer than the model's limit of {model.max_seq_length} "
                "tokens",
                param_hint="--max-length",
            )
        model.max_seq_length = max_length
    return model


def _stream(reader: Any, model: Any, out: Path, opts: EncodeOptions, console: EncodeConsole) -> Any:
    """Chunks from ``reader`` through ``model`` into ``out``, which appears only on success
    (an error, Ctrl-C or SIGTERM leaves no file and any previous output as it was)."""
    from seqenc.io import open_writer

    width, vector_dtype = row_spec(model.dimension, opts.precision)
    try:
        writer = open_writer(out, width=width, dtype=vector_dtype)
    except OSError as e:
        raise click.FileError(str(out), hint=_os_reason(e)) from None
    with console.progress(reader.total) as progress, writer, sigterm_as_interrupt():
        return encode_stream(reader, model, writer, opts, progress)


def _os_reason(e: OSError) -> str:
    return f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
