"""Exit codes shared by every seqenc command, and the decorator that maps failures to them.

Click only: importing this keeps ``seqenc --help`` instant.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import click

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected error
EXIT_USAGE = 2  # click's usage errors, and settings a command rejects
EXIT_INPUT = 3  # bad input data: the message names file, line and field
EXIT_MODEL = 4  # the model could not be loaded
EXIT_INTERRUPTED = 130  # Ctrl-C (or SIGTERM), as shells report SIGINT

EXIT_CODES = """\b
Exit codes:
  0    success
  1    unexpected error (set SEQENC_DEBUG=1 for a traceback)
  2    usage error (bad option or argument)
  3    bad input data (the message names file, line and field)
  4    the model could not be loaded
  130  interrupted (Ctrl-C or SIGTERM); no output is written
"""

# An exception -> (exit code, one-line message), or None to let it propagate.
Classify = Callable[[Exception], "tuple[int, str] | None"]


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)  # click's own prefix, for one look
    raise click.exceptions.Exit(code)


def exit_codes(classify: Classify, interrupted: str = "interrupted") -> Callable:
    """Decorator: run a click command, turning failures into documented exit codes."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except KeyboardInterrupt:
                click.echo(f"\n{interrupted}", err=True)
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
            except Exception as e:
                verdict = classify(e)
                if verdict is None:
                    raise
                code, message = verdict
                if code in (EXIT_ERROR, EXIT_USAGE) and os.environ.get("SEQENC_DEBUG"):
                    traceback.print_exc()
                fail(message, code)

        return run

    return decorate
