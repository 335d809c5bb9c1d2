"""A Ray job that fails or is interrupted (seqenc.ray.api, seqenc.ray.output): a bad record
leaves nothing behind, a killed actor loses and duplicates nothing, and what a driver killed
outright left is removed by the next run; on a local 2-CPU Ray runtime."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from ray_support import assert_same, single_machine, texts  # noqa: E402

from seqenc.io.errors import InputError  # noqa: E402
from seqenc.ray import encode_dataset  # noqa: E402
from seqenc.ray.runtime import NICENESS, descendant_pids  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_runtime")


def test_a_bad_record_fails_the_job_and_leaves_nothing_then_a_rerun_writes_once(
    tmp_path, mixed_inputs
):
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        encode_dataset([str(mixed_inputs["jsonl"])], out, chunk_size=8, actors=1, threads=1)
    assert str(e.value) == (
        f"{mixed_inputs['jsonl']}:4: not valid JSON (Expecting property name enclosed in "
        "double quotes at column 2)"
    )
    assert sorted(os.listdir(tmp_path)) == ["in"]  # no output, no staging directory left
    result = encode_dataset(
        [str(mixed_inputs["jsonl"])], out, chunk_size=8, actors=1, threads=1, on_error="skip"
    )
    table = pq.read_table(out)
    assert table.schema.names == ["id", "vector"]  # one input file: no source column
    ids = table.column("id").to_pylist()
    assert ids == [i for i in range(1, 24) if i not in (4, 23)] and result.records == 21


def _encoding_actor_pids() -> list[int]:
    """The encoding actors of this test's Ray runtime: descendants of this process (never
    another runtime's on the same machine)."""
    pids = []
    for pid in descendant_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"MapWorker(MapBatches(EncodeActor))" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def test_killing_an_actor_mid_job_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "in.txt"
    lines = texts(240)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    killed = []

    def kill_one_actor(n: int) -> None:
        if not killed:  # the first chunk is back: the job is under way, most of it ahead
            pids = _encoding_actor_pids()
            assert pids, "no encoding actor found to kill"
            # a local runtime's actors run at the caller's priority, not Ray's +15
            assert NICENESS not in os.environ
            assert {os.getpriority(os.PRIO_PROCESS, p) for p in pids} == {
                os.getpriority(os.PRIO_PROCESS, 0)}
            os.kill(pids[0], signal.SIGKILL)
            [staging] = tmp_path.glob(".out.seqenc-*.tmp")
            killed.append(len(list(staging.glob("part-*"))))

    out = tmp_path / "out"
    result = encode_dataset([str(path)], out, chunk_size=6, actors=2, threads=1,
                            progress=kill_one_actor)
    assert killed and killed[0] < 40  # shards on disk at the kill: the job was not done
    table = pq.read_table(out)
    ids = table.column("id").to_pylist()
    assert ids == list(range(1, 241)) and result.records == 240  # each id once, in order
    assert_same(table, single_machine(path, tmp_path / "ref.parquet"))


def _read_terminal(fd: int, until, timeout: float = 600.0) -> str:
    """What a process wrote to the pseudo-terminal ``fd`` until ``until(text)`` holds."""
    text, deadline = "", time.monotonic() + timeout
    while not until(text):
        assert time.monotonic() < deadline, f"gave up waiting; the terminal showed:\n{text}"
        if select.select([fd], [], [], 0.5)[0]:
            try:
                text += os.read(fd, 65536).decode(errors="replace")
            except OSError:  # the process closed the terminal
                break
    return text


def test_a_driver_killed_mid_job_is_cleaned_up_by_the_next_run(tmp_path):
    """`seqenc encode --engine ray --ray-address` (this module's runtime) on a terminal: a
    progress bar, then SIGKILL: the staging directory stays behind; the next run removes it
    and writes every id once."""
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts(2000)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    terminal, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    driver = subprocess.Popen(
        [sys.executable, "-c", "from seqenc.cli import main; main()", "encode", "--engine",
         "ray", str(path), "-o", str(out), "--chunk-size", "4", "--actors", "1",
         "--threads", "1", "--ray-address", ray.get_runtime_context().gcs_address],
        stdin=subprocess.DEVNULL, stdout=side, stderr=side, close_fds=True,
    )
    os.close(side)
    try:
        def under_way(text: str) -> bool:
            counts = re.findall(r"encode \(ray\): +(\d+)rec", text)
            return bool(counts) and int(counts[-1]) > 0 or driver.poll() is not None

        shown = _read_terminal(terminal, under_way)
        assert driver.poll() is None, f"the driver ended before it was killed:\n{shown}"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        os.close(terminal)
    [staging] = tmp_path.glob(".out.seqenc-*.tmp")
    assert any(staging.glob("part-*.parquet"))  # shards of the chunks done before the kill
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [staging.name.removesuffix(".tmp") + ".lock", staging.name, "in.txt"]
    )  # and no output directory

    messages = []
    result = encode_dataset([str(path)], out, chunk_size=500, actors=1, threads=1,
                            warn=messages.append)
    [message] = messages
    assert message.startswith(f"removed {staging}, left by a job that no longer runs (pid "
                              f"{driver.pid} on {socket.gethostname()}, started ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out"]
    ids = pq.read_table(out).column("id").to_pylist()
    assert ids == list(range(1, 2001)) and result.records == 2000
