"""``seqenc encode --engine ray``: options in, progress bar and summary out.

The command line's half of the Ray engine; ``encode_dataset`` does the work. Kept apart from
seqenc/cli.py so that the CLI only adds the options and one call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from seqenc.exits import sigterm_as_interrupt


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"


def encode_on_ray(
    sources: Sequence[str], output: str | None, *, quiet: bool = False, **options: Any
) -> None:
    """Run ``encode_dataset`` for the CLI: a progress bar on a terminal, the summary after.

    ``options`` are the encode command's (``fmt``, ``no_truncate`` as click names them).
    """
    from seqenc.ray import encode_dataset
    from seqenc.ray.output import OutputError

    options["format"] = options.pop("fmt", None)
    options["truncate"] = not options.pop("no_truncate", False)
    if output is None:
        raise click.UsageError("--engine ray needs -o/--output: the directory for the shards")
    bar = None

    def warn(message: str) -> None:
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)

    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="rec", desc="encode (ray)", file=sys.stderr, dynamic_ncols=True)
    try:
        with sigterm_as_interrupt():
            result = encode_dataset(
                list(sources),
                output,
                progress=bar.update if bar is not None else None,
                warn=warn,
                **options,
            )
    except OutputError as e:
        raise click.BadParameter(str(e), param_hint="-o/--output") from None
    except ValueError as e:
        if not str(e).startswith("--max-length"):
            raise
        raise click.BadParameter(str(e).removeprefix("--max-length "),
                                 param_hint="--max-length") from None
    finally:
        if bar is not None:
            bar.close()
            bar = None

    if result.truncated:
        ids = ", ".join(map(str, result.truncated_ids))
        more = ", ..." if result.truncated > len(result.truncated_ids) else ""
        warn(
            f"warning: {result.truncated} records were longer than the model's limit and were "
            f"truncated (ids {ids}{more}); --no-truncate rejects them instead"
        )
    if result.blank and not quiet:
        done = ("were left out" if options.get("skip_blank")
                else "were encoded as empty texts; --skip-blank leaves them out")
        warn(f"warning: {result.blank} blank or whitespace-only texts {done}")
    if result.records == 0:
        warn("warning: the inputs held no records to encode")
    if not quiet:
        click.echo(
            f"encoded {result.records:,} records ({result.tokens:,} tokens, "
            f"{result.truncated:,} truncated, {result.skipped:,} skipped"
            f"{f', {result.blank:,} blank' if result.blank else ''}) in "
            f"{result.seconds:.2f} s: {_rate(result.records, result.seconds)} records/s, "
            f"{_rate(result.tokens, result.seconds)} tokens/s "
            f"({result.actors} actors x {result.threads} threads)",
            err=True,
        )
        click.echo(
            f"wrote {result.records:,} vectors (dim {result.dimension}, "
            f"{options.get('precision', 'float32')}) from {result.files} file(s) to "
            f"{result.output}/ ({result.shards} parquet shards)",
            err=True,
        )
