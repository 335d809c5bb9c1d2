"""What ``seqenc encode`` tells its user on stderr while and after it runs.

Click and the standard library only (tqdm is imported when a bar is shown), so the CLI stays
quick to start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from seqenc.streaming import EncodeOptions, EncodeStats


class EncodeConsole:
    """stderr for one ``seqenc encode`` run: a progress bar on a terminal, warnings that do
    not tear it, and the closing summary. --quiet turns off the bar, the summary and the
    note about blank texts; the other warnings (truncation, no records) always show."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self._bar: Any = None

    def warn(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)

    @contextmanager
    def progress(self, total: int | None,
                 desc: str = "encode") -> Iterator[Callable[[int], Any]]:
        if self.quiet or not sys.stderr.isatty():
            yield lambda n: None
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="rec", desc=desc, file=sys.stderr,
                         dynamic_ncols=True)
        try:
            yield self._bar.update
        finally:
            self._bar.close()
            self._bar = None

    def report(self, stats: EncodeStats, reader: Any, model: Any, out: Path,
               opts: EncodeOptions) -> None:
        if stats.truncated:
            self.warn(
                f"warning: {stats.truncated} records were longer than {model.max_seq_length} "
                f"tokens and were truncated (ids {_ids(stats.truncated_ids, stats.truncated)}); "
                "--no-truncate rejects them instead"
            )
        if stats.blank and not self.quiet:
            what = f"{reader.unit}s" if reader.format == "txt" else "texts"
            done = ("were left out" if opts.skip_blank
                    else "were encoded as empty texts; --skip-blank leaves them out")
            self.warn(f"warning: {stats.blank} blank or whitespace-only {what} (ids "
                      f"{_ids(stats.blank_ids, stats.blank)}) {done}")
        if stats.records == 0:
            self.warn(f"warning: {reader.name} held no records to encode")
        if self.quiet:
            return
        blank = ""
        if stats.blank:
            blank = f", {stats.blank:,} blank {'left out' if opts.skip_blank else 'among them'},"
        click.echo(
            f"encoded {stats.records:,} records ({stats.tokens:,} tokens, {stats.truncated:,} "
            f"truncated, {reader.skipped:,} skipped){blank} in {stats.seconds:.2f} s: "
            f"{_rate(stats.records, stats.seconds)} records/s, "
            f"{_rate(stats.tokens, stats.seconds)} tokens/s",
            err=True,
        )
        click.echo(
            f"wrote {stats.records:,} vectors (dim {model.dimension}, {opts.precision}) to {out}",
            err=True,
        )


def _ids(shown: list, total: int) -> str:
    return ", ".join(map(str, shown)) + (", ..." if total > len(shown) else "")


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"
