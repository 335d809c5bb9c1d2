"""start_runtime's retries of a local Ray start, with a fake ``ray`` module: a failed try's
processes are stopped, the raylet's reason is reported, and the retries end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from seqenc.ray.runtime import NICENESS, RayStartError, start_runtime

TIMEOUT = ("The current node timed out during startup. This could happen because some of the "
           "raylet failed to startup or the GCS has become overloaded.")
# what Ray 2.60's raylet wrote when its dashboard agent was too slow on a loaded machine
RAYLET_ERR = (
    "[2026-12-03 06:52:41,503 C 29367 29367] (raylet) node_manager.cc:3576:  An unexpected "
    "system state has occurred. You have likely discovered a bug in Ray. Check failed: "
    "statussetor3576.has_value() Timed out waiting for file {session}/metrics_agent_port_28a1\n"
    "*** StackTrace Information ***\n"
)


class FakeRay:
    """ray.init fails ``failures`` times (with ``error``), then starts."""

    def __init__(self, failures: int, error: Exception | None = None, start=None):
        self.failures, self.error, self.start = failures, error or Exception(TIMEOUT), start
        self.calls: list[tuple] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, address=None, **options) -> None:
        self.calls.append((address, os.environ.get(NICENESS)))
        if self.start is not None:
            self.start()
        if len(self.calls) <= self.failures:
            raise self.error

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_failed_local_start_is_retried_with_backoff_then_gives_up_naming_the_failure(
    monkeypatch,
):
    monkeypatch.delenv(NICENESS, raising=False)
    waits: list[float] = []
    messages: list[str] = []
    ray = FakeRay(failures=2)
    assert start_runtime(ray, None, sleep=waits.append, warn=messages.append, num_cpus=2)
    assert ray.calls == [(None, "0")] * 3 and waits == [5.0, 10.0] and ray.shutdowns == 2
    assert messages == [  # the third try started
        f"Ray did not start (try 1 of 3): {TIMEOUT}; trying again in 5 s",
        f"Ray did not start (try 2 of 3): {TIMEOUT}; trying again in 10 s",
    ]
    assert NICENESS not in os.environ

    ray, waits = FakeRay(failures=3), []
    with pytest.raises(RayStartError) as e:
        start_runtime(ray, None, sleep=waits.append)
    assert str(e.value) == (
        f"could not start a local Ray runtime (3 attempts; is the machine overloaded?): {TIMEOUT}"
    )
    assert e.value.__cause__ is ray.error and len(ray.calls) == 3 and ray.shutdowns == 3
    assert waits == [5.0, 10.0]  # none after the last try
    assert NICENESS not in os.environ


def test_what_retrying_cannot_fix_is_raised_at_once(monkeypatch):
    for address, error in ((None, ValueError("bad option")), ("auto", ConnectionError("no"))):
        ray = FakeRay(failures=1, error=error)
        with pytest.raises(type(error)) as e:
            start_runtime(ray, address, sleep=pytest.fail)
        assert e.value is error and len(ray.calls) == 1


def test_a_failed_try_stops_the_processes_it_started_and_reports_the_raylets_reason(tmp_path):
    """As ray.init does on a loaded machine: Ray processes started (a stand-in that carries its
    session directory on the command line, as Ray's do), the raylet's fatal line in
    logs/raylet.err, then the generic timeout."""
    started: list[subprocess.Popen] = []

    def start() -> None:
        session = tmp_path / f"session_{len(started)}"
        (session / "logs").mkdir(parents=True)
        (session / "logs" / "raylet.err").write_text(RAYLET_ERR.format(session=session))
        started.append(subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)", f"--session-dir={session}"]
        ))

    ray = FakeRay(failures=2, start=start)
    try:
        with pytest.raises(RayStartError) as e:
            start_runtime(ray, None, attempts=2, sleep=lambda s: None)
        codes = [p.wait(timeout=10) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [-signal.SIGTERM] * 2  # each try's processes stopped before the next
    session = Path(tmp_path / "session_1")
    assert str(e.value).endswith(
        f"{TIMEOUT} (raylet: Timed out waiting for file {session}/metrics_agent_port_28a1)"
    )
