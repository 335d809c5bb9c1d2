"""What a training run tells its user on stderr: a progress bar of optimizer steps, and one
line per event (start, evaluation, interruption, end) that does not tear the bar. Only the
main process of a distributed run shows anything. tqdm is imported when used."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class TrainConsole:
    """``echo`` takes the messages instead of stderr (the CLI's, tests' quiet one);
    ``progress`` shows the bar or not (default: when stderr is a terminal)."""

    def __init__(self, is_main: bool, echo: Callable[[str], None] | None = None,
                 progress: bool | None = None):
        self.is_main = is_main
        self.echo = echo
        self.progress = progress

    def say(self, message: str) -> None:
        if not self.is_main:
            return
        if self.echo is not None:
            self.echo(message)
        else:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)

    def bar(self, total: int, done: int) -> Any:
        """A tqdm bar of ``total`` steps, ``done`` of them taken (disabled where not shown)."""
        from tqdm.auto import tqdm

        show = self.progress if self.progress is not None else sys.stderr.isatty()
        return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True,
                    disable=not (show and self.is_main), file=sys.stderr)
