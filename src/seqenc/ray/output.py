"""The output directory of a Ray job: shards written into a staging directory, committed at
the end by renaming it into place.

Every chunk of every input becomes at most one shard, ``part-FFFFF-CCCCCC.parquet`` (input
file F, chunk C), written to a temporary name and renamed. The names are fixed by the input,
not by which worker ran or how often: when Ray retries a chunk after a worker died, the retry
rewrites the same shard, so no row appears twice. Sorting the names sorts the rows in input
order. The staging directory sits beside the output (same filesystem, so the final rename is
atomic); only a complete job renames it into place, with a ``_SUCCESS`` file that records the
counts. A job that fails or is interrupted leaves no output directory, or the previous one
untouched; a re-run starts from a fresh staging directory, so it cannot duplicate rows.

Everything a job keeps beside the output is named ``.NAME.seqenc-TOKEN.*``: ``.lock`` (who
runs the job: host, pid; the driver holds an exclusive ``flock`` on it while the job runs),
``.tmp`` (the staging directory) and, for an instant during the commit, ``.old`` (the
previous output). A driver killed outright (SIGKILL, power loss) cannot clean up; the kernel
drops its lock, and the next job on the same host writing to the same output removes what it
left (``clean_stale``). A lock still held, or whose process still runs, marks a live job:
its files are never touched.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqenc.atomic import write_text
from seqenc.extras import require

SUCCESS = "_SUCCESS"


class OutputError(Exception):
    """The output directory cannot be used (exists with other files, or is a file)."""


def shard_name(file_index: int, chunk: int) -> str:
    return f"part-{file_index:05d}-{chunk:06d}.parquet"


def check_output_dir(out: Path) -> None:
    """Refuse a path that is a file, or a directory that holds something other than a
    previous seqenc output (which a new job replaces whole, never appends to)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SUCCESS).exists():
        raise OutputError(
            f"{out} is not empty and holds no {SUCCESS} from an earlier seqenc run; "
            "remove it or choose another output directory"
        )


@dataclass
class Staging:
    """This job's files beside the output: the staging directory and its lock."""

    path: Path  # .NAME.seqenc-TOKEN.tmp: the shards
    lock: Path  # .NAME.seqenc-TOKEN.lock: held while the job runs
    old: Path  # .NAME.seqenc-TOKEN.old: the previous output, during the commit only
    fd: int


def _base(out: Path, token: str) -> Path:
    return out.with_name(f".{out.name}.seqenc-{token}")


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell it from a later
    process that got the same pid; None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def staging_dir(out: Path) -> Staging:
    """A new, empty staging directory beside ``out``, locked by this process; absolute,
    because the workers' working directory is not the driver's."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    base = _base(out, secrets.token_hex(4))
    lock = Path(f"{base}.lock")
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "start": _start_time(os.getpid()), "output": str(out),
             "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    # Lock a file no one else can see yet, then rename it into place: a lock that is
    # visible is always held, so clean_stale never mistakes a starting job for a dead one.
    new = Path(f"{lock}.new")
    fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        os.replace(new, lock)
        staging = Staging(Path(f"{base}.tmp"), lock, Path(f"{base}.old"), fd)
        staging.path.mkdir()
    except BaseException:
        for leftover in (new, lock):
            leftover.unlink(missing_ok=True)
        os.close(fd)
        raise
    return staging


def _release(staging: Staging, leftover: Path) -> None:
    """Remove ``leftover``, then the lock (last: until then it marks the leftovers as ours;
    if something could not be removed, the lock stays for the next job to retry)."""
    if _removed(leftover):
        staging.lock.unlink(missing_ok=True)
    os.close(staging.fd)


def _removed(path: Path) -> bool:
    for _ in range(3):  # a dead job's worker may still be finishing a shard in it
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return True
        time.sleep(0.5)
    return False


def _free_lock(lock: Path) -> tuple[int, dict] | None:
    """(locked fd, owner) if no process holds ``lock`` any more, else None."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None  # gone meanwhile: its job finished
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner = json.loads(os.read(fd, 65536))
        owner["pid"], owner["host"] = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        # held (a live job), a filesystem without locks, or not a lock we wrote: keep it
        os.close(fd)
        return None
    return fd, owner


def clean_stale(out: Path) -> list[str]:
    """Remove what jobs killed outright left beside ``out`` (see the module's docstring);
    restores the previous output if one was killed between the two renames of its commit.
    Only a job of this host is judged: its lock must be free and its process gone. Another
    host's lock may look free where the filesystem does not share locks between hosts, so
    its leftovers are only reported. Returns one message per thing done or left, for the user.
    """
    out = out.absolute()
    messages: list[str] = []
    if not out.parent.is_dir():
        return messages
    for lock in sorted(out.parent.glob(f"{glob.escape(f'.{out.name}')}.seqenc-*.lock")):
        found = _free_lock(lock)
        if found is None:
            continue
        fd, owner = found
        try:
            base = Path(str(lock).removesuffix(".lock"))
            tmp, old = Path(f"{base}.tmp"), Path(f"{base}.old")
            pid, host = owner["pid"], owner["host"]
            who = f"(pid {pid} on {host}, started {owner.get('started', '?')})"
            if host != socket.gethostname():
                messages.append(
                    f"left {base}.* alone: written by a job on another host {who} that this "
                    f"one cannot check; delete them once no seqenc job writes to {out}"
                )
                continue
            start = owner.get("start")
            if start is not None and _start_time(pid) == start:
                continue  # free, yet its process runs: trust the process over the lock
            who = f"a job that no longer runs {who}"
            if old.exists() and not out.exists():
                os.replace(old, out)
                messages.append(f"restored the previous output {out}, moved aside by {who}")
            done = True
            for leftover in (tmp, old):
                if leftover.exists():
                    if _removed(leftover):
                        messages.append(f"removed {leftover}, left by {who}")
                    else:
                        done = False
                        messages.append(f"could not remove all of {leftover}, left by {who}")
            if done:
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return messages


def write_shard(
    directory: str,
    file_index: int,
    chunk: int,
    ids: list,
    vectors: Any,
    source: str | None,
    sparse: bool = False,
) -> str:
    """Write one shard atomically (temporary name, then rename); returns its file name.

    The single-machine parquet writers make it (seqenc.io): the columns of ``seqenc encode -o
    x.parquet`` (``id``, ``vector``), or of ``seqenc encode --sparse -o x.parquet`` (``id``,
    ``indices``, ``values``) for ``sparse`` vectors, then ``source`` when the job read
    several files.
    """
    from seqenc.io import ParquetWriter, SparseWriter

    name = shard_name(file_index, chunk)
    path = Path(directory, name)
    writer = SparseWriter(path, "parquet", source=source) if sparse \
        else ParquetWriter(path, source=source)
    with writer:
        writer.write(ids, vectors)
    return name


def commit(staging: Staging, out: Path, shards: dict[str, int], summary: dict[str, Any]) -> None:
    """Check the staging directory holds exactly the reported shards, then move it to ``out``.

    ``shards`` maps each shard name to the rows its worker reported; a shard on disk that no
    chunk reported, or one missing, means the job is not complete and nothing is committed.
    """
    pq = require("pyarrow.parquet", "reading parquet")

    for leftover in staging.path.glob(".*"):  # temporary files of attempts that died mid-write
        leftover.unlink()
    on_disk = {p.name for p in staging.path.iterdir()}
    if on_disk != set(shards):
        raise RuntimeError(
            f"staging directory {staging.path} does not match the job's reports: "
            f"{sorted(on_disk ^ set(shards))[:5]}"
        )
    for name, rows in shards.items():
        found = pq.ParquetFile(staging.path / name).metadata.num_rows
        if found != rows:
            raise RuntimeError(f"shard {name} holds {found} rows, its worker reported {rows}")
    write_text(staging.path / SUCCESS, json.dumps(summary, indent=2) + "\n")
    if out.exists():
        os.replace(out, staging.old)
    try:
        os.replace(staging.path, out)
    except BaseException:
        if staging.old.exists() and not out.exists():
            os.replace(staging.old, out)  # the previous output back where it was
        raise
    _release(staging, staging.old)


def discard(staging: Staging) -> None:
    """Remove the staging directory of a job that failed; the output stays as it was."""
    _release(staging, staging.path)
