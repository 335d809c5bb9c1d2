"""The processes of a local Ray runtime, seen through Linux /proc (empty answers elsewhere)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path


def cmdline(pid: int) -> list[str]:
    """A process's arguments; empty if it is gone (or there is no /proc, as on macOS)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_ray_process(pid: int) -> bool:
    """A live (not zombie) process of a Ray session: they all get their session's name or
    directory on the command line."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return False
    return any(a.startswith(("--session-name=", "--session-dir=", "--session_dir="))
               for a in cmdline(pid))


def descendant_pids(root: int | None = None) -> set[int]:
    """The processes under ``root`` (default: this one)."""
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
    stack = list(children.get(os.getpid() if root is None else root, []))
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def mentioning(text: str) -> set[int]:
    """The processes with ``text`` in an argument: a session's, by its unique directory, even
    those no longer under the process that started them (orphans are re-parented)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    return {int(e) for e in entries if e.isdigit() and any(text in a for a in cmdline(int(e)))}


def kill_all(pids: set[int], grace_s: float = 5.0) -> None:
    """SIGTERM the Ray processes among ``pids``, then SIGKILL those alive ``grace_s`` later
    (a failed start's processes: Ray forgets them when ``ray.init`` raises, and they would
    hold ports and CPU, making the next try harder)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if is_ray_process(pid)]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:  # it exited meanwhile
                pass
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if is_ray_process(pid)]
            time.sleep(0.1)
        if not alive:
            return


def session_failure(pids: set[int]) -> str | None:
    """The raylet's fatal line from the session these processes belong to, if it wrote one
    (``ray.init`` reports only a generic timeout)."""
    for pid in pids:
        for arg in cmdline(pid):
            match = re.match(r"--session[-_]dir=(.+)", arg)
            if match:
                return fatal_line(Path(match.group(1)) / "logs" / "raylet.err")
    return None


def fatal_line(path: Path) -> str | None:
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
