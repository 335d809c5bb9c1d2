"""seqenc.exits: the exit-code decorator and the signal handling every command shares."""

from __future__ import annotations

import os
import signal
import threading

import click
import pytest
from click.testing import CliRunner

from seqenc import exits
from seqenc.extras import MissingExtra


def test_sigterm_raises_keyboard_interrupt_then_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with exits.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_signal_helpers_leave_signals_alone_off_the_main_thread():
    seen = []

    def work():
        for helper in (exits.sigterm_as_interrupt, exits.signals_end_cleanly):
            with helper():
                seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before, before]


def test_signals_end_cleanly_ignores_sigint_and_sigterm_inside_only():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with exits.signals_end_cleanly():
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt outside
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MissingExtra("x", "pyarrow", "io"), exits.EXIT_EXTRA),
        (exits.ModelLoadError("no model"), exits.EXIT_MODEL),
        (KeyboardInterrupt(), exits.EXIT_INTERRUPTED),
        (ValueError("ours"), exits.EXIT_USAGE),
    ],
)
def test_exit_codes_decorator(error, code):
    @click.command()
    @exits.exit_codes(lambda e: (exits.EXIT_USAGE, str(e)) if isinstance(e, ValueError) else None)
    def command():
        raise error

    result = CliRunner().invoke(command, [])
    assert result.exit_code == code
    assert "Traceback" not in result.output


def test_unclassified_errors_propagate():
    @click.command()
    @exits.exit_codes(lambda e: None)
    def command():
        raise RuntimeError("boom")

    result = CliRunner().invoke(command, [])
    assert isinstance(result.exception, RuntimeError)
