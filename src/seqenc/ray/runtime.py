"""Starting (or joining) the Ray runtime of ``seqenc encode --engine ray``.

A local runtime is a handful of processes (GCS, raylet, dashboard head and agent, runtime-env
agent, log monitor) that must find each other within timeouts Ray hard-codes: the raylet
gives its dashboard agent 15 s to write its port file (node_manager.cc,
WaitForDashboardAgentPorts; no RayConfig key), and ``ray.init`` gives the raylet 30 s to
register (ray/_private/node.py). On a loaded machine the agents, Python processes importing
Ray, miss them: the raylet aborts, and ``ray.init`` raises "The current node timed out during
startup ... or the GCS has become overloaded". Such a failure is transient, so a local start
is retried a bounded number of times (a second try also finds Ray's modules in the page
cache), with what the failed try left behind stopped first; the last failure is raised with
the raylet's own reason, which Ray leaves in a log file.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ray starts its workers at niceness +15 (RayConfig worker_niceness): on a machine shared with
# normal-priority work, the encoding actors of a local runtime would starve while the
# single-process `seqenc encode` runs at the caller's priority.
NICENESS = "RAY_worker_niceness"

ATTEMPTS = 3  # local starts tried before giving up: load spikes pass within a minute or so
BACKOFF_S = 5.0  # the wait before the second try; doubled before each next one


class RayStartError(RuntimeError):
    """A local Ray runtime could not be started, even after retries."""


def start_runtime(
    ray: Any,
    address: str | None,
    *,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
    warn: Callable[[str], None] | None = None,
    **init: Any,
) -> bool:
    """Join ``address`` (auto, ray://...), or start a local runtime; True if started here.

    A local runtime's workers run at the caller's niceness rather than Ray's +15, unless
    RAY_worker_niceness is set; a cluster joined keeps its own setting. ``init`` goes to
    ``ray.init`` (tests: ``num_cpus``). A local start that fails is retried up to
    ``attempts`` times in all, ``backoff_s`` then twice that ... apart (``warn`` is told why,
    so that the wait is not silent); then RayStartError names the failure. Joining a
    cluster is tried once: its errors are the user's to see.
    """
    if ray.is_initialized():
        return False
    if address is not None:
        _init(ray, address, init)
        return True
    reasons: list[str] = []
    for attempt in range(1, attempts + 1):
        before = descendant_pids()
        try:
            _init(ray, None, init)
            return True
        except (TypeError, ValueError):
            raise  # an option ray.init rejects: trying again cannot help
        except Exception as e:
            started = descendant_pids() - before
            raylet = _raylet_failure(started)
            reasons.append(f"{e}" + (f" (raylet: {raylet})" if raylet else ""))
            last = e
        _stop(ray, started)
        if attempt < attempts:
            wait = backoff_s * 2 ** (attempt - 1)
            if warn is not None:
                warn(f"Ray did not start (try {attempt} of {attempts}): {reasons[-1]}; "
                     f"trying again in {wait:g} s")
            sleep(wait)
    raise RayStartError(
        f"could not start a local Ray runtime ({attempts} attempts; is the machine "
        f"overloaded?): {reasons[-1]}"
    ) from last


def _init(ray: Any, address: str | None, init: dict[str, Any]) -> None:
    """``ray.init`` with seqenc's settings; a local runtime's workers at our niceness."""
    local = address is None and NICENESS not in os.environ
    if local:
        os.environ[NICENESS] = "0"  # read by the raylet that ray.init starts
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,  # workers' errors come back as exceptions, reports as rows
            logging_level=logging.WARNING,
            configure_logging=True,
            **init,
        )
    finally:
        if local:
            del os.environ[NICENESS]  # the caller's environment as it was


def _stop(ray: Any, pids: set[int]) -> None:
    """Undo a failed start: disconnect the driver if it got that far, and stop the Ray
    processes it left running (Ray forgets them when ``ray.init`` raises; they would hold
    ports and CPU, making the next try harder, until this process exits)."""
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - nothing was started to shut down
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if _is_ray_process(pid)]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:  # it exited meanwhile
                pass
        deadline = time.monotonic() + 5.0
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _is_ray_process(pid)]
            time.sleep(0.1)
        if not alive:
            return


def _cmdline(pid: int) -> list[str]:
    """A process's arguments; empty if it is gone (or there is no /proc, as on macOS)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_ray_process(pid: int) -> bool:
    """A live (not zombie) process of a Ray session: they all get their session's name or
    directory on the command line."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return False
    return any(a.startswith(("--session-name=", "--session-dir=", "--session_dir="))
               for a in _cmdline(pid))


def descendant_pids() -> set[int]:
    """The processes under this one (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    stack = list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def _raylet_failure(pids: set[int]) -> str | None:
    """The raylet's fatal line from the session the failed try started, if it wrote one
    (``ray.init`` reports only a generic timeout)."""
    for pid in pids:
        for arg in _cmdline(pid):
            match = re.match(r"--session[-_]dir=(.+)", arg)
            if match:
                return _fatal_line(Path(match.group(1)) / "logs" / "raylet.err")
    return None


def _fatal_line(path: Path) -> str | None:
    """The message of the first fatal (`` C ``) line of a Ray C++ log, without its prefix."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        match = re.match(r"\[[^]]*\bC\b[^]]*\] \(raylet\) (.*)", line)
        if match:
            message = match.group(1)
            # "...: An unexpected system state ... Check failed: ... <the reason>"
            return message.rsplit(" Check failed: ", 1)[-1].split(" ", 1)[-1].strip()
    return None
