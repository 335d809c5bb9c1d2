"""The ``seqenc`` command line: encode, similarity, info, attention (and the groups defined
beside their code: train/predict/evaluate, serve, bench, fetch).

Only click and the standard library are imported at start-up; numpy, torch and the model are
imported inside the commands, so ``seqenc --help`` answers at once.

Past 400 lines because ``encode`` declares ~27 options (inputs, model, pooling, precision,
sparse output, the Ray engine) as click decorators, which a reader wants in one place; the
steps behind it are short functions below it, and the other groups live beside their code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from seqenc.bench_cli import bench_command  # click only: the harness loads when it runs
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
from seqenc.exits import (
    EXIT_CODES,
    EXIT_INPUT,
    ModelLoadError,
    exit_codes,
    sigterm_as_interrupt,
    unexpected,
)
from seqenc.extras import require
from seqenc.fetch import fetch_command  # stdlib and click only
from seqenc.search_cli import register as register_search  # click only: stays lazy
from seqenc.server.cli import serve_command  # click only: the server loads when it runs
from seqenc.streaming import EncodeOptions, encode_stream, row_spec
from seqenc.train.cli import register as register_training  # click only: stays lazy


def load_model(name: str | None, device: str = "cpu") -> Any:
    """The CLI's only way to a model; tests replace it with a fake of the same interface."""
    try:
        from seqenc.allocator import tune_memory
        from seqenc.model import SentenceEncoder

        tune_memory()  # every CLI command that loads a model runs batch after batch
        return SentenceEncoder.from_pretrained(name, device=device)
    except Exception as e:
        raise ModelLoadError(f"cannot load model {name or 'default'!r}: {e}") from e


def _classify(e: Exception) -> tuple[int, str]:
    from seqenc.io.errors import InputError

    if isinstance(e, InputError):
        return EXIT_INPUT, str(e)
    return unexpected(e)


_exit_codes = exit_codes(_classify, "interrupted: no output written")


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="seqenc")
def main() -> None:
    """seqenc: encode sentences into vectors with a Transformer sentence encoder."""


# -- encode ----------------------------------------------------------------------------------
# The command reads as its steps: choose the output, open the input, load the model, stream
# chunks from one to the other, report. Each step is a function below the command.


@main.command(epilog=EXIT_CODES)
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
@_exit_codes
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
    """--device's value as "cpu" or "cuda" (seqenc.model.resolve_device), or a usage error."""
    if name == "cpu":  # no torch import before it is needed
        return name
    from seqenc.model import resolve_device

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
    from seqenc.threads import set_threads

    set_threads(threads)
    model = load_model(name, device)
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


# -- similarity ------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("texts", nargs=-1, required=True)
@click.option("--model", "model_name", metavar="NAME|PATH", help="Model name or directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_exit_codes
def similarity(texts: tuple[str, ...], model_name: str | None, as_json: bool) -> None:
    """Print the cosine similarity of every pair of TEXTS."""
    import numpy as np

    if len(texts) < 2:
        raise click.UsageError("give at least two texts to compare")
    model = load_model(model_name)
    vectors = np.asarray(model.encode(list(texts), normalize=True), dtype=np.float64)
    matrix = np.clip(vectors @ vectors.T, -1.0, 1.0)
    if as_json:
        click.echo(json.dumps({"texts": list(texts), "similarity": matrix.round(6).tolist()}))
        return
    labels = [f"[{i}]" for i in range(1, len(texts) + 1)]
    width = max(7, *(len(label) for label in labels))
    click.echo(" " * width + "".join(label.rjust(width + 1) for label in labels))
    for label, row in zip(labels, matrix, strict=True):
        click.echo(label.ljust(width) + "".join(f"{v:.4f}".rjust(width + 1) for v in row))
    click.echo()
    for label, text in zip(labels, texts, strict=True):
        click.echo(f"{label} {text}")


# -- info ------------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("model_name", metavar="[MODEL]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_exit_codes
def info(model_name: str | None, as_json: bool) -> None:
    """Describe MODEL (default: the packaged all-MiniLM-L6-v2, or $SEQENC_MODEL)."""
    facts = dict(load_model(model_name).describe())
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        click.echo(f"{key.replace('_', ' '):<{width}}  {shown}")


# -- attention -------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("text")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="PNG file to write (missing directories are created).",
)
@click.option("--model", "model_name", metavar="NAME|PATH", help="Model name or directory.")
@click.option("--layer", "layers", type=int, multiple=True, help="Layer to draw (repeatable).")
@click.option("--head", "heads", type=int, multiple=True, help="Head to draw (repeatable).")
@click.option("--title", help="Figure title (default: the text).")
@_exit_codes
def attention(
    text: str,
    output: str,
    model_name: str | None,
    layers: tuple[int, ...],
    heads: tuple[int, ...],
    title: str | None,
) -> None:
    """Draw the attention weights of TEXT, per layer and head, to a PNG heatmap grid.

    Layers and heads count from 0; by default all are drawn.
    """
    out = Path(output)
    if out.suffix.lower() != ".png":
        raise click.BadParameter("the attention map is a PNG: name it *.png", param_hint="-o")
    require("matplotlib", "seqenc attention")  # before the slow model load
    model = load_model(model_name)
    from seqenc.atomic import atomic_path
    from seqenc.viz import encoder_attentions, plot_attention

    batch = model.tokenize([text])
    tokens = model.tokenizer.tokens(text)
    maps = encoder_attentions(model.encoder, batch.input_ids, batch.attention_mask)
    n_layers, n_heads = len(maps), maps[0].shape[0]
    for name, chosen, available in (("--layer", layers, n_layers), ("--head", heads, n_heads)):
        for i in chosen:
            if not 0 <= i < available:
                raise click.BadParameter(
                    f"{i} is out of range: the model has {available} (0..{available - 1})",
                    param_hint=name,
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        plot_attention(
            tokens,
            maps,
            tmp,
            layers=list(layers) or None,
            heads=list(heads) or None,
            title=title if title is not None else text,
        )
    click.echo(
        f"wrote attention map ({len(layers) or n_layers} layers x {len(heads) or n_heads} heads, "
        f"{len(tokens)} tokens) to {out}",
        err=True,
    )


# train classify|mlm, predict, evaluate: defined in seqenc/train/cli.py
register_training(main)
# rerank (cross-encoders): defined in seqenc/search_cli.py
register_search(main)

# serve: defined in seqenc/server/cli.py; bench: in seqenc/bench_cli.py
main.add_command(serve_command, "serve")
main.add_command(bench_command, "bench")
main.add_command(fetch_command, "fetch")


if __name__ == "__main__":  # pragma: no cover
    main()
