"""``seqenc encode --engine ray``: options in, progress bar and summary out.

The command line's half of the Ray engine; ``encode_dataset`` does the work. Kept apart from
seqenc/encode_cli.py so that the command only adds the options and one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from seqenc.console import EncodeConsole, _ids, _rate
from seqenc.exits import sigterm_as_interrupt


def encode_on_ray(
    sources: Sequence[str], output: str | None, *, quiet: bool = False, **options: Any
) -> None:
    """Run ``encode_dataset`` for the CLI: the single-machine command's progress bar (on a
    terminal), warnings and summary, plus the pool size.

    ``options`` are the encode command's (``fmt``, ``no_truncate`` as click names them).
    """
    from seqenc.ray import encode_dataset
    from seqenc.ray.output import OutputError

    options["format"] = options.pop("fmt", None)
    options["truncate"] = not options.pop("no_truncate", False)
    if output is None:
        raise click.UsageError("--engine ray needs -o/--output: the directory for the shards")
    console = EncodeConsole(quiet)
    try:
        with sigterm_as_interrupt(), console.progress(None, "encode (ray)") as update:
            result = encode_dataset(list(sources), output, progress=update, warn=console.warn,
                                    **options)
    except OutputError as e:
        raise click.BadParameter(str(e), param_hint="-o/--output") from None
    except ValueError as e:
        if str(e).startswith("dtype int8"):  # encode_dataset's _check_int8, before Ray starts
            raise click.BadParameter(str(e), param_hint="--dtype") from None
        if not str(e).startswith("--max-length"):
            raise
        raise click.BadParameter(str(e).removeprefix("--max-length "),
                                 param_hint="--max-length") from None

    if result.truncated:
        console.warn(
            f"warning: {result.truncated} records were longer than the model's limit and were "
            f"truncated (ids {_ids(result.truncated_ids, result.truncated)}); --no-truncate "
            "rejects them instead"
        )
    skip_blank = options.get("skip_blank")
    if result.blank and not quiet:
        done = ("were left out" if skip_blank
                else "were encoded as empty texts; --skip-blank leaves them out")
        console.warn(f"warning: {result.blank} blank or whitespace-only texts {done}")
    if result.records == 0:
        console.warn("warning: the inputs held no records to encode")
    if quiet:
        return
    blank = ""
    if result.blank:
        blank = f", {result.blank:,} blank {'left out' if skip_blank else 'among them'},"
    click.echo(
        f"encoded {result.records:,} records ({result.tokens:,} tokens, "
        f"{result.truncated:,} truncated, {result.skipped:,} skipped){blank} in "
        f"{result.seconds:.2f} s: {_rate(result.records, result.seconds)} records/s, "
        f"{_rate(result.tokens, result.seconds)} tokens/s "
        f"({result.actors} actors x {result.threads} threads)",
        err=True,
    )
    if options.get("sparse"):  # worded as `seqenc encode --sparse` words it
        mean = result.nonzero / result.records if result.records else 0.0
        what = (f"sparse vectors ({mean:.1f} non-zero weights on average, vocabulary "
                f"{result.dimension})")
    else:
        what = f"vectors (dim {result.dimension}, {options.get('precision', 'float32')})"
    click.echo(
        f"wrote {result.records:,} {what} from {result.files} file(s) to "
        f"{result.output}/ ({result.shards} parquet shards)",
        err=True,
    )
