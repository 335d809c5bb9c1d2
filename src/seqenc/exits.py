"""Exit codes and signals, shared by every seqenc command (encode, train, serve, ...).

The codes, their documentation (``--help`` epilogs; the README's table is checked against
``EXIT_CODES`` by the tests), the decorator that maps failures to them, and the signal
handling around long runs. Click and the standard library only: importing this keeps
``seqenc --help`` instant.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from seqenc.extras import MissingExtra

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected error, or an output that cannot be written
EXIT_USAGE = 2  # click's usage errors, and settings a command rejects
EXIT_INPUT = 3  # bad input data: the message names file, line and field
EXIT_MODEL = 4  # the model could not be loaded
EXIT_EXTRA = 5  # an optional extra is not installed: the message names the pip install
EXIT_INTERRUPTED = 130  # Ctrl-C (or SIGTERM), as shells report SIGINT

EXIT_CODES = """\b
Exit codes:
  0    success
  1    unexpected error (set SEQENC_DEBUG=1 for a traceback)
  2    usage error (bad option or argument)
  3    bad input data (the message names file, line and field)
  4    the model could not be loaded
  5    an optional extra is missing (the message names what to pip install)
  130  interrupted (Ctrl-C or SIGTERM); no output is written
"""

SERVE_EXIT_CODES = """\b
Exit codes:
  0    stopped by SIGTERM or Ctrl-C: the requests in flight finished, or those still
       running after --graceful-timeout were answered 503 (logged as 'cut short'); a
       model load still running then was abandoned (logged as 'did not stop')
  1    error (the port is taken, say)
  2    usage error (bad option)
  4    the model could not be loaded
  5    the serve extra is missing: pip install 'seqenc[serve]'
"""


class ModelLoadError(Exception):
    """The model named on the command line could not be found or loaded (exit 4)."""


# An exception -> (exit code, one-line message), or None to let it propagate.
Classify = Callable[[Exception], "tuple[int, str] | None"]


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)  # click's own prefix, for one look
    raise click.exceptions.Exit(code)


def unexpected(e: Exception) -> tuple[int, str]:
    """Exit 1 with a one-line message (OSErrors name their file themselves)."""
    return EXIT_ERROR, str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"


def bad_input(e: Exception) -> tuple[int, str]:
    """Bad input data (seqenc.io's InputError, which names file, line and field) -> exit 3;
    anything else -> ``unexpected``."""
    from seqenc.io.errors import InputError

    if isinstance(e, InputError):
        return EXIT_INPUT, str(e)
    return unexpected(e)


def _common(e: Exception) -> tuple[int, str] | None:
    """What every command maps the same way, whatever its own ``classify`` says."""
    if isinstance(e, MissingExtra):
        return EXIT_EXTRA, str(e)
    if isinstance(e, ModelLoadError):
        return EXIT_MODEL, str(e)
    return None


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
                verdict = _common(e) or classify(e)
                if verdict is None:
                    raise
                code, message = verdict
                if code in (EXIT_ERROR, EXIT_USAGE) and os.environ.get("SEQENC_DEBUG"):
                    traceback.print_exc()
                fail(message, code)

        return run

    return decorate


# The commands that read records and write an output (encode, similarity, info, attention,
# rerank): their outputs appear only on success, so an interrupted run leaves none.
output_exit_codes = exit_codes(bad_input, "interrupted: no output written")


# -- signals ---------------------------------------------------------------------------------


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (what batch schedulers and `timeout` send) like Ctrl-C: it raises
    KeyboardInterrupt, so encode removes its temporary output and training saves a resumable
    checkpoint on the way out. Off the main thread signals are left alone."""
    if not _on_main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_end_cleanly(on_signal: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGTERM and SIGINT only call ``on_signal`` here, for code that handles them itself and
    treats them as a clean stop: uvicorn shuts down gracefully and then re-raises the signal to
    the handler it found, which by default kills the process (exit -15) or raises
    KeyboardInterrupt. ``on_signal`` covers a signal that arrives before the code installs its
    own handlers (uvicorn: while it starts); ignored, such a SIGTERM was lost."""
    if not _on_main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if on_signal is not None:
            on_signal()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
