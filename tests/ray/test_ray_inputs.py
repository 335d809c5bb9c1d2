"""seqenc.ray's driver-side pieces without a Ray runtime: input expansion, chunking, output
directory checks and the commit. Fast; the Ray runtime tests are in test_ray_encode.py."""

from __future__ import annotations

import pickle
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
    commit,
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
    name = write_shard(str(staging), 0, 0, [1, 2, 3], vectors, None)
    extra = write_shard(str(staging), 0, 1, [4], vectors[:1], None)
    with pytest.raises(RuntimeError, match="does not match"):
        commit(staging, out, {name: 3}, {})
    (staging / extra).unlink()
    with pytest.raises(RuntimeError, match="holds 3 rows"):
        commit(staging, out, {name: 2}, {})
    commit(staging, out, {name: 3}, {"records": 3})
    assert sorted(p.name for p in out.iterdir()) == [SUCCESS, name]
    assert not staging.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old output is gone too


def test_without_ray_one_line_names_the_extra(tmp_path, monkeypatch):
    from seqenc.extras import MissingExtra
    from seqenc.ray import encode_dataset

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'seqenc\[ray\]'"):
        encode_dataset([str(tmp_path)], tmp_path / "out")
