"""seqenc.ray's driver-side pieces without a Ray runtime: input expansion, chunking, output
directory checks and the commit. Fast; the jobs on a Ray runtime are in test_ray_encode.py,
test_ray_faults.py and test_ray_command.py."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest

from seqenc.io.errors import InputError
from seqenc.ray.inputs import ReadOptions, expand_inputs, plan_inputs, read_chunks
from seqenc.ray.job import plan_resources
from seqenc.ray.output import (
    SUCCESS,
    OutputError,
    check_output_dir,
    clean_stale,
    commit,
    discard,
    staging_dir,
    write_shard,
)


def test_directories_globs_and_files_expand_sorted_once(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.txt", "d/a.jsonl", "d/sub/c.parquet", "d/notes.md", "d/.hidden.txt",
                 "d/_SUCCESS", "x.txt"):
        (tmp_path / name).write_text("")
    found = expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.txt"), str(tmp_path / "x.txt")])
    names = [n.removeprefix(str(tmp_path) + "/") for n, _ in found]
    assert names == ["d/a.jsonl", "d/b.txt", "d/sub/c.parquet", "x.txt"]
    assert all(p.startswith("/") for _, p in found)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("-", "not stdin"), ("nothing-*.txt", "no files match"), ("empty", "no input files")],
)
def test_inputs_that_name_nothing_are_input_errors(tmp_path, monkeypatch, pattern, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=message):
        expand_inputs([pattern])


def test_files_are_checked_before_any_worker_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.csv").write_text("sentence\nhello\n")
    with pytest.raises(InputError) as e:
        plan_inputs(["a.csv"], None, ReadOptions(field="text"))
    assert str(e.value).startswith("a.csv:1: field 'text': no such column")  # the user's name
    with pytest.raises(InputError, match="missing.txt: cannot read input"):
        plan_inputs(["missing.txt"], None, ReadOptions())


def test_chunks_carry_records_and_the_skip_messages_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text(
        '{"text": "one"}\nnot json\n{"text": "two"}\n{"text": "three"}\n{"x": 1}\n'
    )
    [source] = plan_inputs(["a.jsonl"], None, ReadOptions(on_error="skip"))
    skip = ReadOptions("text", None, "skip", chunk_size=3)
    chunks = [(n, *pickle.loads(p)) for n, p in read_chunks(source, skip)]
    # the bad last line comes after the last full chunk: an empty chunk carries its message
    assert [(n, [r.id for r in records]) for n, records, _ in chunks] == [(0, [1, 3, 4]), (1, [])]
    assert chunks[0][2] == ["skipped a.jsonl:2: not valid JSON (Expecting value at column 1)"]
    assert chunks[1][2] == ["skipped a.jsonl:5: field 'text': missing"]
    with pytest.raises(InputError, match=r"^a.jsonl:2: not valid JSON"):
        list(read_chunks(source, ReadOptions(on_error="raise", chunk_size=2)))


def test_resources_fill_the_cluster():
    assert (plan_resources(2, None, None).actors, plan_resources(2, None, None).threads) == (1, 2)
    assert (plan_resources(16, None, 4).actors, plan_resources(16, 3, None).threads) == (4, 5)
    assert plan_resources(1, None, None).threads == 1


def test_output_directory_must_be_new_empty_or_an_earlier_output(tmp_path):
    check_output_dir(tmp_path / "new")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_output_dir(tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="not empty"):
        check_output_dir(tmp_path / "mine")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / SUCCESS).write_text("{}")
    check_output_dir(tmp_path / "old")


def test_commit_replaces_an_earlier_output_and_refuses_unreported_shards(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000-000009.parquet").write_text("stale")
    (out / SUCCESS).write_text("{}")
    staging = staging_dir(out)
    vectors = np.ones((3, 4), np.float32)
    name = write_shard(str(staging.path), 0, 0, [1, 2, 3], vectors, None)
    extra = write_shard(str(staging.path), 0, 1, [4], vectors[:1], None)
    with pytest.raises(RuntimeError, match="does not match"):
        commit(staging, out, {name: 3}, {})
    (staging.path / extra).unlink()
    with pytest.raises(RuntimeError, match="holds 3 rows"):
        commit(staging, out, {name: 2}, {})
    commit(staging, out, {name: 3}, {"records": 3})
    assert sorted(p.name for p in out.iterdir()) == [SUCCESS, name]
    assert not staging.path.exists()
    # the old output, the staging directory and its lock are gone
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    failed = staging_dir(out)
    write_shard(str(failed.path), 0, 0, [1], vectors[:1], None)
    discard(failed)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _killed_job(out, *, commit_half_done: bool = False) -> str:
    """Start a staging directory in a child process (one shard in it, or with the commit cut
    between its two renames), then SIGKILL the child: what a killed driver leaves."""
    code = f"""
import sys, numpy as np
from pathlib import Path
from seqenc.ray.output import staging_dir, write_shard
import os
out = Path({str(out)!r})
s = staging_dir(out)
write_shard(str(s.path), 0, 0, [1, 2], np.ones((2, 4), np.float32), None)
if {commit_half_done}:
    os.replace(out, s.old)
print(s.path.name, flush=True)
sys.stdin.read()
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    name = child.stdout.readline().strip()
    assert name, "the child did not start its staging directory"
    child.send_signal(signal.SIGKILL)
    child.wait()
    return name


def test_leftovers_of_a_killed_driver_are_removed_by_the_next_job(tmp_path):
    out = tmp_path / "out"
    name = _killed_job(out)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [name.removesuffix(".tmp") + ".lock", name]  # lock, staging: nothing else
    owner = json.loads((tmp_path / left[0]).read_text())
    assert owner["output"] == str(out) and owner["pid"] != os.getpid()

    live = staging_dir(out)  # a job running now, in this process: held lock, live pid
    (tmp_path / ".out.seqenc-someone.tmp").mkdir()  # same pattern, no lock: not ours to judge
    (tmp_path / ".other.seqenc-1234.lock").write_text("{}")  # another output's
    (tmp_path / "out.txt").write_text("x")
    # a free lock of another host's job: on a filesystem that does not share locks between
    # hosts it looks free while that job runs, so it is reported, not removed
    (tmp_path / ".out.seqenc-elsewhere.lock").write_text(
        json.dumps({**owner, "host": "elsewhere.example"}))
    (tmp_path / ".out.seqenc-elsewhere.tmp").mkdir()
    kept = sorted([live.path.name, live.lock.name, ".out.seqenc-someone.tmp",
                   ".other.seqenc-1234.lock", "out.txt", ".out.seqenc-elsewhere.lock",
                   ".out.seqenc-elsewhere.tmp"])
    # one message each, in the directory's listing order (the filesystem's, not ours)
    messages = clean_stale(out)
    assert len(messages) == 2, messages
    removed, foreign = sorted(messages, key=lambda m: not m.startswith("removed "))
    assert removed.startswith(f"removed {tmp_path / name}, left by a job that no longer runs "
                              f"(pid {owner['pid']} on ")
    assert foreign.startswith(f"left {tmp_path / '.out.seqenc-elsewhere'}.* alone: written by "
                              "a job on another host (pid ")
    assert sorted(p.name for p in tmp_path.iterdir()) == kept
    assert clean_stale(out) == [foreign]  # nothing more to do; the live job is untouched
    discard(live)


def test_a_lock_that_is_free_but_whose_process_runs_is_kept(tmp_path):
    out = tmp_path / "out"
    staging = staging_dir(out)
    os.close(staging.fd)  # the lock is free; the pid and start time are still this process's
    assert clean_stale(out) == [] and staging.path.exists()


def test_a_driver_killed_inside_its_commit_gets_the_previous_output_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / SUCCESS).write_text('{"records": 7}')
    _killed_job(out, commit_half_done=True)
    assert not out.exists()  # moved aside, the new output not yet in place
    messages = clean_stale(out)
    assert messages[0].startswith(
        f"restored the previous output {out}, moved aside by a job that no longer runs (pid ")
    assert len(messages) == 2 and messages[1].startswith("removed ")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / SUCCESS).read_text() == '{"records": 7}'


def test_without_ray_one_line_names_the_extra(tmp_path, monkeypatch):
    from seqenc.extras import MissingExtra
    from seqenc.ray import encode_dataset

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'seqenc\[ray\]'"):
        encode_dataset([str(tmp_path)], tmp_path / "out")

    from click.testing import CliRunner

    from seqenc import cli
    from seqenc.exits import EXIT_EXTRA

    (tmp_path / "in.txt").write_text("a\n")
    result = CliRunner().invoke(cli.main, ["encode", "--engine", "ray", str(tmp_path / "in.txt"),
                                           "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_EXTRA
    assert result.stderr.strip().splitlines() == [
        "Error: the ray engine needs ray, which is not installed: pip install 'seqenc[ray]'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
