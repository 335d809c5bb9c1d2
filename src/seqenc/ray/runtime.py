"""Starting (or joining) the Ray runtime of ``seqenc encode --engine ray``.

A local runtime is a handful of processes (GCS, raylet, dashboard head and agent, runtime-env
agent, log monitor) that must find each other within timeouts Ray hard-codes. The one a
loaded machine misses is the raylet's: 15 s for its agents' port files (node_manager.cc,
WaitForDashboardAgentPorts; no RayConfig key), while the agents, Python processes importing
Ray, took over a minute on a starved machine; the raylet aborts, and ``ray.init`` raises "The
current node timed out during startup". So a local runtime is started by ``ray start`` with
the agent ports chosen beforehand or their port files written at once, which removes that
wait (head.py), and ``ray.init`` joins it. What can still fail (``ray start`` gives the
raylet 30 s to register; a port taken in between) is retried a bounded number of times, with
what the failed try left behind stopped first; the last failure is raised with its reason.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .head import NICENESS, RAY_CLI, Head, HeadError, start_head
from .procs import descendant_pids, kill_all, session_failure

__all__ = ["NICENESS", "RayStartError", "descendant_pids", "start_runtime", "stop_runtime"]

ATTEMPTS = 3  # local starts tried before giving up: load spikes pass within a minute or so
BACKOFF_S = 5.0  # the wait before the second try; doubled before each next one

ADDRESS = "RAY_ADDRESS"  # a cluster to join, read by ray.init

_head: Head | None = None  # the local head this process started, until stop_runtime
_ray: Any = None  # the ray module it was joined with, for the exit handler


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
    num_cpus: int | None = None,
    cli: Sequence[str] = RAY_CLI,
) -> bool:
    """Join ``address`` (auto, ray://...), or start a local runtime; True if started here
    (then ``stop_runtime`` stops it).

    A local runtime's workers run at the caller's niceness rather than Ray's +15, unless
    RAY_worker_niceness is set; a cluster joined keeps its own setting. ``num_cpus`` sizes a
    local runtime (default: the machine's); ``cli`` is the ``ray`` command (tests: a
    stand-in). A local start that fails is retried up to ``attempts`` times in all,
    ``backoff_s`` then twice that ... apart (``warn`` is told why, so that the wait is not
    silent); then RayStartError names the failure. Joining a cluster is tried once: its
    errors are the user's to see.
    """
    global _head, _ray
    if ray.is_initialized():
        return False
    if address is not None:
        _init(ray, address)
        return True
    reasons: list[str] = []
    for attempt in range(1, attempts + 1):
        head: Head | None = None
        before = descendant_pids()
        try:
            head = start_head(num_cpus, cli=cli)
            _init(ray, head.address, head.temp_dir)
            _head, _ray = head, ray
            return True
        except (TypeError, ValueError):
            _undo(ray, head, before)
            raise  # an option ray.init rejects: trying again cannot help
        except Exception as e:
            reason = str(e) if isinstance(e, HeadError) else _with_raylet(e, before)
            reasons.append(reason)
            last = e
        _undo(ray, head, before)
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


def stop_runtime(ray: Any, *, keep_logs: bool = False) -> Path | None:
    """Disconnect from Ray, and stop the local runtime if this process started one (its
    processes and its temp directory): ``ray.shutdown`` alone leaves a ``ray start`` node
    running. With ``keep_logs`` (or SEQENC_RAY_KEEP_LOGS set) the node's directory stays, for
    its logs: returns where (else None)."""
    global _head, _ray
    ray.shutdown()
    head, _head, _ray = _head, None, None
    return head.stop(keep_logs) if head is not None else None


@atexit.register
def _stop_at_exit() -> None:
    """A head the caller did not stop (an exception it did not catch, a notebook closed):
    stopped after Ray's own exit handler has disconnected the driver."""
    if _head is not None:
        stop_runtime(_ray)


def _init(ray: Any, address: str, temp_dir: Path | None = None) -> None:
    """``ray.init`` joining ``address`` with seqenc's settings; for the head in ``temp_dir``,
    joined as "auto" there: Ray then turns on the token authentication that ``ray start``
    set up (an explicit address never does), as ``ray.init`` does for a runtime it starts.
    RAY_ADDRESS, which "auto" would prefer, is set aside meanwhile."""
    options: dict[str, Any] = {}
    saved = None
    if temp_dir is not None:
        address, options["_temp_dir"] = "auto", str(temp_dir)
        saved = os.environ.pop(ADDRESS, None)
    try:
        ray.init(
            address=address,
            log_to_driver=False,  # workers' errors come back as exceptions, reports as rows
            logging_level=logging.WARNING,
            configure_logging=True,
            **options,
        )
    finally:
        if saved is not None:
            os.environ[ADDRESS] = saved


def _with_raylet(error: Exception, before: set[int]) -> str:
    """``error`` with the raylet's own reason, if the try's session recorded one."""
    raylet = session_failure(descendant_pids() - before)
    return f"{error}" + (f" (raylet: {raylet})" if raylet else "")


def _undo(ray: Any, head: Head | None, before: set[int]) -> None:
    """Undo a failed try: disconnect the driver if it got that far, stop the head, and
    whatever Ray processes the try left running under this one."""
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - nothing was started to shut down
        pass
    if head is not None:
        head.stop()
    kill_all(descendant_pids() - before)
