"""start_runtime's local start, with a fake ``ray`` module and a stand-in for ``ray start``
(fake_ray_cli.py) whose raylet waits for agent port files as Ray 2.60's does: the head gets
fixed agent ports and the raylet its HTTP port file, a failed try's processes are stopped,
the raylet's reason is reported, and the retries end."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from seqenc.ray.head import KEEP_LOGS
from seqenc.ray.runtime import NICENESS, RayStartError, start_runtime, stop_runtime

pytest.importorskip("ray._raylet")  # the port-file writer is Ray's (ray._raylet.persist_port)

FAKE_CLI = (sys.executable, str(Path(__file__).with_name("fake_ray_cli.py")))
TIMEOUT = ("Exception: The current node timed out during startup. This could happen because "
           "some of the raylet failed to startup or the GCS has become overloaded.")


class FakeRay:
    """ray.init joins what the stand-in started (or fails with ``error``)."""

    def __init__(self, error: Exception | None = None):
        self.error, self.calls, self.shutdowns = error, [], 0

    def is_initialized(self) -> bool:
        return False

    def init(self, address=None, **options) -> None:
        temp = options.get("_temp_dir")
        joined = Path(temp, "ray_current_cluster").read_text() if temp else None
        self.calls.append((address, joined, os.environ.get("RAY_ADDRESS")))
        if self.error is not None:
            raise self.error

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture
def fake_ray_start(monkeypatch, tmp_path):
    """The stand-in's environment; returns where its per-start records go (set by the first
    start: the head's temp directory is made by start_runtime)."""
    monkeypatch.setenv("FAKE_RAY_COUNT", str(tmp_path / "count"))
    monkeypatch.setenv("FAKE_RAY_WAIT_S", "15")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")  # a cluster the local start must not join
    monkeypatch.delenv(NICENESS, raising=False)
    monkeypatch.delenv(KEEP_LOGS, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the heads' temp dirs, to inspect
    return tmp_path


def starts(tmp_path: Path) -> list[dict]:
    """What the stand-in recorded of each start: its arguments, pids and environment."""
    return [json.loads((tmp_path / f"start-{n}.json").read_text())
            for n in range(1, len(list(tmp_path.glob("start-*.json"))) + 1)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_a_local_head_has_its_agent_ports_fixed_or_written_and_no_metrics_agent(
    fake_ray_start,
):
    stale, recent = fake_ray_start / "seqenc-ray-killed", fake_ray_start / "seqenc-ray-new"
    for d in (stale, recent):
        (d / "session_x").mkdir(parents=True)
    os.utime(stale, (1, time.time() - 120))  # a head whose driver was killed 2 minutes ago
    ray = FakeRay()
    assert start_runtime(ray, None, num_cpus=2, cli=FAKE_CLI,
                         sleep=lambda s: pytest.fail(f"retried after {s} s"))
    assert not stale.exists() and recent.exists()  # removed; maybe a head starting up
    recent.rename(fake_ray_start / "not-a-head")
    [head_dir] = fake_ray_start.glob("seqenc-ray-*")
    [start] = starts(fake_ray_start)
    flags = dict(a[2:].split("=", 1) for a in start["argv"] if "=" in a)
    assert start["argv"][:3] == ["start", "--head", "--block"]
    assert flags["num-cpus"] == "2" and flags["include-dashboard"] == "false"
    names = ("port", "dashboard-port", "dashboard-agent-listen-port", "runtime-env-agent-port")
    ports = [int(flags[n]) for n in names]
    assert len(set(ports)) == 4 and min(ports) > 0  # chosen here, none left to the agents
    # the metrics ports are not named: the raylet takes them from files written here, as
    # "not served" (-1), so that no process of the runtime runs a metrics exporter
    assert "dashboard-agent-grpc-port" not in flags and "metrics-export-port" not in flags
    # the raylet registered (it had every port: the others from the files written here)
    [session] = head_dir.glob("session_*")
    registered = eval((session / "registered").read_text())  # noqa: S307 - our own repr
    assert registered == {
        "metrics_agent_port": -1, "metrics_export_port": -1,
        "runtime_env_agent_port": int(flags["runtime-env-agent-port"]),
        "dashboard_agent_listen_port": int(flags["dashboard-agent-listen-port"]),
    }
    assert ray.calls == [("auto", f"127.0.0.1:{flags['port']}", None)]  # ours, RAY_ADDRESS aside
    assert os.environ["RAY_ADDRESS"] == "10.0.0.9:6379"
    assert start["env"] == {NICENESS: "0", "RAY_worker_register_timeout_seconds": "600",
                            "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "0"}
    assert NICENESS not in os.environ  # set for the head only
    assert all(alive(pid) for pid in start["pids"])
    stop_runtime(ray)
    assert ray.shutdowns == 1 and not any(alive(pid) for pid in start["pids"])
    assert not head_dir.exists()  # sessions, logs and sockets removed with the head


def test_a_failed_start_is_retried_with_backoff_then_gives_up_naming_the_raylets_reason(
    fake_ray_start, monkeypatch,
):
    monkeypatch.setenv("FAKE_RAY_FAIL", "2")
    monkeypatch.setenv(NICENESS, "5")  # the user's choice wins
    waits: list[float] = []
    messages: list[str] = []
    ray = FakeRay()
    assert start_runtime(ray, None, cli=FAKE_CLI, sleep=waits.append, warn=messages.append)
    assert waits == [5.0, 10.0] and len(ray.calls) == 1  # joined only the head that came up
    assert len(list(fake_ray_start.glob("seqenc-ray-*"))) == 1  # failed tries' dirs removed
    started = starts(fake_ray_start)[2]
    assert started["env"][NICENESS] == "5"
    assert messages == [
        f"Ray did not start (try {n} of 3): {TIMEOUT}; trying again in {w:g} s"
        for n, w in ((1, 5), (2, 10))]
    assert not any(alive(p) for s in starts(fake_ray_start)[:2] for p in s["pids"])
    stop_runtime(ray)
    assert not any(alive(pid) for pid in started["pids"])

    # the raylet's window for port files gone before any could come: its own reason is given
    monkeypatch.setenv("FAKE_RAY_FAIL", "0")
    monkeypatch.setenv("FAKE_RAY_WAIT_S", "0")
    waits, ray = [], FakeRay()
    with pytest.raises(RayStartError) as e:
        start_runtime(ray, None, cli=FAKE_CLI, sleep=waits.append)
    message = str(e.value)
    assert message.startswith(
        "could not start a local Ray runtime (3 attempts; is the machine overloaded?): raylet: "
        f"Timed out waiting for file {fake_ray_start}/seqenc-ray-")
    assert "/metrics_agent_port_" in message  # the first file the raylet waits for
    assert waits == [5.0, 10.0] and ray.calls == []  # none after the last try
    assert not list(fake_ray_start.glob("seqenc-ray-*"))  # every try's head stopped, removed


def test_what_retrying_cannot_fix_is_raised_at_once_and_a_cluster_is_joined_as_named(
    fake_ray_start,
):
    ray = FakeRay(error=ValueError("bad option"))
    with pytest.raises(ValueError) as e:
        start_runtime(ray, None, cli=FAKE_CLI, sleep=lambda s: pytest.fail(f"retried after {s} s"))
    assert e.value is ray.error and len(ray.calls) == 1
    assert not list(fake_ray_start.glob("seqenc-ray-*"))  # its head stopped
    ray = FakeRay(error=ConnectionError("no"))
    with pytest.raises(ConnectionError):
        start_runtime(ray, "auto", cli=FAKE_CLI, sleep=pytest.fail)
    assert ray.calls == [("auto", None, "10.0.0.9:6379")]  # no head of ours: the user's cluster


def test_a_stopped_heads_directory_is_kept_for_its_logs_when_asked(fake_ray_start, monkeypatch):
    ray = FakeRay()
    assert start_runtime(ray, None, cli=FAKE_CLI, sleep=pytest.fail)
    [head_dir] = fake_ray_start.glob("seqenc-ray-*")
    [start] = starts(fake_ray_start)
    kept = stop_runtime(ray, keep_logs=True)
    assert kept == fake_ray_start / head_dir.name.replace("seqenc-ray-", "seqenc-ray-logs-")
    assert not head_dir.exists() and (kept / "ray-start.log").exists()
    assert len(list(kept.glob("session_*"))) == 1  # the session's logs with it
    assert not any(alive(pid) for pid in start["pids"])  # the node stopped all the same
    os.utime(kept, (1, time.time() - 120))  # old, and no process names it: not a stale head's

    monkeypatch.setenv(KEEP_LOGS, "1")  # the same, for every stop, from the environment
    assert start_runtime(ray, None, cli=FAKE_CLI, sleep=pytest.fail)
    assert kept.exists()  # the next start's clean-up left it
    second = stop_runtime(ray)
    assert second is not None and second != kept and second.name.startswith("seqenc-ray-logs-")
    assert sorted(fake_ray_start.glob("seqenc-ray-*")) == sorted([kept, second])
