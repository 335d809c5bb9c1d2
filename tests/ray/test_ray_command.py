"""``seqenc encode --engine ray`` (seqenc.ray.command): --precision int8 and its usage errors,
--dtype int8, and --sparse refusing dense options before any work; on a local 2-CPU Ray runtime."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

pytest.importorskip("ray")

from ray_support import single_machine  # noqa: E402

from seqenc import cli  # noqa: E402
from seqenc.ray import encode_dataset  # noqa: E402
from seqenc.ray.output import SUCCESS  # noqa: E402


@pytest.mark.usefixtures("ray_runtime")
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


@pytest.mark.usefixtures("ray_runtime")
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
