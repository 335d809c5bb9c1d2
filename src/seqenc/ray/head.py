"""A local Ray head that does not wait for its agents: ``ray start --head --block`` in a child.

Ray 2.60's raylet gives its dashboard agent 15 s to write four port files (node_manager.cc,
``WaitForDashboardAgentPorts`` and ``WaitForRuntimeEnvAgentPort``: ``WaitForPersistedPort``
with a 15,000 ms timeout, then a fatal check), but waits for a port only when it was started
with 0 for it. On a starved machine the agents, Python processes importing Ray, need a minute
or more, so the raylet aborts and the start fails however often it is tried. ``ray.init``
cannot name those ports. This module names two on ``ray start``'s command line (the
runtime-env agent's, which reaches the raylet's, and the agent's HTTP port) and writes the
raylet's other three port files itself, as soon as the raylet's command line names its
session directory and node id:

- the agent's HTTP port: ``ray start`` gives it to the agent but not to the raylet
  (services.py ``start_raylet`` has no ``--dashboard_agent_listen_port``), so the raylet
  waits for its file; the agent later writes the same number there (or -1: see below);
- the metrics agent and metrics export ports: -1, "not served", which is what the agent
  writes in the ``ray`` install seqenc uses (no dashboard packages: agent.py's minimal mode)
  and what a head started by ``ray.init`` in that install runs with. Naming real ports there
  instead (``--dashboard-agent-grpc-port``, ``--metrics-export-port``) told the raylet, and
  through it every worker and driver, that a metrics agent listened where none did: each
  process then ran an OpenTelemetry exporter failing every 10 s, each time in a new thread
  that reads the environment (getenv("TZ") to format the failed call's status) while the
  task's thread changes it (Ray sets OMP_NUM_THREADS for every task; seqenc's load_model
  adds ONEDNN_PRIMITIVE_CACHE_CAPACITY) -- the getenv/setenv race that crashes Ray workers
  (ray-project/ray#61034), and the likely death of a worker in a CI run (RESULTS.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .procs import cmdline, descendant_pids, fatal_line, kill_all, mentioning

logger = logging.getLogger(__name__)

NICENESS = "RAY_worker_niceness"
READY = "Ray runtime started."  # what `ray start` prints once the node is up
RAY_CLI = (sys.executable, "-m", "ray.scripts.scripts")  # `ray`, from this interpreter
# Ray's other start-up windows that a starved machine misses, widened for a local head. A
# worker (a Python process importing Ray) must register within 60 s or the raylet kills it and
# starts another, forever; `ray start` waits 60 s for the dashboard head, which seqenc does
# not use (include_dashboard=False: failing to start it is only logged), before starting the
# raylet. And the workers' niceness: Ray's default +15 starves them next to normal-priority
# work, while a single-process `seqenc encode` runs at the caller's priority.
SLOW_MACHINE = {
    "RAY_worker_register_timeout_seconds": "600",
    "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "0",
    NICENESS: "0",
}
KEEP_LOGS = "SEQENC_RAY_KEEP_LOGS"  # set (to anything): stop() keeps the node's directory
PREFIX, KEPT_PREFIX = "seqenc-ray-", "seqenc-ray-logs-"  # a head's temp directory; once kept
NOT_SERVED = -1  # a port file's "no such service here", as Ray's minimal agent writes it
HEAD_TIMEOUT_S = 900.0  # a ceiling only: `ray start` fails on its own timeouts first
STOP_TIMEOUT_S = 30.0  # for `ray start` to stop its processes on SIGTERM, then SIGKILL


class HeadError(RuntimeError):
    """``ray start`` exited (or hung) before its node was up."""


@dataclass
class Head:
    """A running ``ray start --head --block`` and where its node listens."""

    process: subprocess.Popen[bytes]
    address: str  # the GCS, for ray.init(address=...)
    temp_dir: Path  # Ray's --temp-dir: sessions, logs, sockets; removed by stop()
    pids: set[int] = field(default_factory=set)  # the tree, last seen

    def stop(self, keep_logs: bool = False) -> Path | None:
        """SIGTERM ``ray start`` (it stops its node), then SIGKILL whatever of its session is
        left (its processes name the temp directory, which is unique), and remove that; or,
        with ``keep_logs`` or SEQENC_RAY_KEEP_LOGS set, keep it (renamed out of
        _remove_stale's reach) for its logs, and return where."""
        self.pids |= descendant_pids(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        kill_all(self.pids | mentioning(str(self.temp_dir)))
        if not (keep_logs or os.environ.get(KEEP_LOGS)):
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return None
        kept = self.temp_dir.with_name(self.temp_dir.name.replace(PREFIX, KEPT_PREFIX, 1))
        self.temp_dir.rename(kept)
        logger.warning("kept the local Ray node's directory (its logs) in %s", kept)
        return kept

    def failure(self) -> str:
        """Why the node did not come up: the raylet's fatal line, else ``ray start``'s last
        line (its exception)."""
        for session in sorted(self.temp_dir.glob("session_2*")):
            reason = fatal_line(session / "logs" / "raylet.err")
            if reason:
                return f"raylet: {reason}"
        lines = [line.strip() for line in _read(self.temp_dir / "ray-start.log").splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else f"ray start exited with {self.process.returncode}"


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (bound together, so none repeats)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def head_command(cli: Sequence[str], temp_dir: Path, ports: Sequence[int],
                 num_cpus: int | None) -> list[str]:
    """``ray start`` for a one-machine head on 127.0.0.1 with the GCS, dashboard, runtime-env
    agent and agent HTTP ports fixed; the metrics ports are left to the files written here."""
    gcs, dashboard, agent_http, runtime_env = ports
    return [
        *cli, "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--temp-dir={temp_dir}",
        "--include-dashboard=false", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent_http}", f"--runtime-env-agent-port={runtime_env}",
        *([f"--num-cpus={num_cpus}"] if num_cpus is not None else []),
    ]


def start_head(num_cpus: int | None = None, *, cli: Sequence[str] = RAY_CLI,
               timeout_s: float = HEAD_TIMEOUT_S) -> Head:
    """Start a head and wait until ``ray start`` says it is up; HeadError (with the tree
    stopped) if it exits or hangs first. Its workers run at our niceness unless
    RAY_worker_niceness is set (Ray's default is +15)."""
    _remove_stale(Path(tempfile.gettempdir()))
    temp_dir = Path(tempfile.mkdtemp(prefix=PREFIX))
    ports = free_ports(4)
    env = {**SLOW_MACHINE, **os.environ}  # the user's own settings win
    with open(temp_dir / "ray-start.log", "wb") as log:
        process = subprocess.Popen(
            head_command(cli, temp_dir, ports, num_cpus), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
        )
    head = Head(process, f"127.0.0.1:{ports[0]}", temp_dir)
    try:
        _wait_ready(head, ports[2], timeout_s)
    except BaseException:
        head.stop()
        raise
    return head


def _remove_stale(parent: Path) -> None:
    """Remove the temp directories of heads whose drivers were killed outright (their nodes
    died with them, see _die_with_parent, but nothing removed the directory): no process
    names them any more, and they are not being set up now (older than a minute)."""
    for old in parent.glob(f"{PREFIX}*"):
        if old.name.startswith(KEPT_PREFIX):
            continue  # kept for its logs: the user's to remove
        try:
            stale = time.time() - old.stat().st_mtime > 60 and not mentioning(str(old))
        except OSError:
            continue
        if stale:
            shutil.rmtree(old, ignore_errors=True)


def _wait_ready(head: Head, agent_http: int, timeout_s: float) -> None:
    """Poll until ``ray start`` prints READY; meanwhile write the raylet's agent port files
    as soon as the raylet exists (it waits 15 s for them)."""
    written, deadline = False, time.monotonic() + timeout_s
    while True:
        head.pids |= descendant_pids(head.process.pid)
        if not written:
            written = _write_port_files(head.pids, agent_http)
        if READY in _read(head.temp_dir / "ray-start.log"):
            return
        if head.process.poll() is not None:
            raise HeadError(head.failure())
        if time.monotonic() > deadline:
            raise HeadError(f"ray start did not finish in {timeout_s:g} s")
        time.sleep(0.1)


def _write_port_files(pids: set[int], agent_http: int) -> bool:
    """Write the raylet's port files for the agent's HTTP port and the (unserved, -1)
    metrics ports, if a raylet is among ``pids``; True once written (or if this Ray has no
    port files: older than 2.5x)."""
    try:
        from ray._raylet import (
            DASHBOARD_AGENT_LISTEN_PORT_NAME,
            METRICS_AGENT_PORT_NAME,
            METRICS_EXPORT_PORT_NAME,
            persist_port,
        )
    except ImportError:
        return True
    for pid in pids:
        args = cmdline(pid)
        if not args or not args[0].endswith("raylet"):
            continue
        found = dict(m.groups() for a in args
                     if (m := re.match(r"--(node_id|session_dir)=(.+)", a)))
        if len(found) == 2:
            for name, port in ((METRICS_AGENT_PORT_NAME, NOT_SERVED),
                               (METRICS_EXPORT_PORT_NAME, NOT_SERVED),
                               (DASHBOARD_AGENT_LISTEN_PORT_NAME, agent_http)):
                persist_port(found["session_dir"], found["node_id"], name, port)
            return True
    return False


def _die_with_parent() -> None:
    """In the child, before exec (as Ray's services.py starts its processes): SIGTERM when
    this process dies (Linux prctl PR_SET_PDEATHSIG), so that a driver killed outright does
    not leave a Ray node running (strictly: when the thread that started it ends, which is
    the one that stops it too); and SIGINT blocked, so that Ctrl-C reaches the driver, which
    then stops the node itself, rather than the node mid-job."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


# looked up here, not in the forked child, which should do as little as possible before exec
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
