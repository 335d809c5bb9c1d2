"""What a new user trips over in ``seqenc encode``/``info``/``bench`` (issue 11, item 4)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_model import FakeModel, fake_vectors, run, use_fake_model
from seqenc import cli, exits


@pytest.fixture
def fake(monkeypatch) -> FakeModel:
    return use_fake_model(monkeypatch)


# -- blank lines -----------------------------------------------------------------------------


def test_blank_lines_are_counted_and_warned_about(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("first\n\n   \t\nlast\n")
    result = run("encode", source, "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 0, result.output
    assert ("warning: 2 blank or whitespace-only lines (ids 2, 3) were encoded as empty texts; "
            "--skip-blank leaves them out") in result.stderr
    assert "encoded 4 records (" in result.stderr and "2 blank among them" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4]


def test_skip_blank_leaves_them_out_and_ids_keep_line_numbers(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("first\n\n   \nlast\n")
    result = run("encode", source, "-o", tmp_path / "o.jsonl", "--skip-blank", "--chunk-size", 2)
    assert result.exit_code == 0, result.output
    assert "warning: 2 blank or whitespace-only lines (ids 2, 3) were left out" in result.stderr
    assert "encoded 2 records (" in result.stderr and "2 blank left out" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 4]
    np.testing.assert_allclose([r["embedding"] for r in rows], fake_vectors(["first", "last"]),
                               rtol=1e-6)
    assert sum(call["n"] for call in fake.calls) == 2  # the blank lines never reached the model


def test_no_blank_warning_without_blanks(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    result = run("encode", source, "-o", tmp_path / "o.npy")
    assert "whitespace" not in result.stderr and "blank among" not in result.stderr


# -- derived output names --------------------------------------------------------------------


def test_derived_output_never_replaces_an_existing_file(tmp_path, fake):
    (tmp_path / "t.txt").write_text("from txt\n")
    (tmp_path / "t.jsonl").write_text('{"text": "from jsonl"}\n')
    assert run("encode", tmp_path / "t.txt").exit_code == 0
    first = (tmp_path / "t.npy").read_bytes()
    result = run("encode", tmp_path / "t.jsonl")
    assert result.exit_code == exits.EXIT_USAGE
    assert f"{tmp_path / 't.npy'} already exists" in result.stderr
    assert "--force" in result.stderr and "-o" in result.stderr
    assert (tmp_path / "t.npy").read_bytes() == first
    assert fake.calls[1:] == []  # refused before loading or encoding anything
    assert run("encode", tmp_path / "t.jsonl", "--force").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), fake_vectors(["from jsonl"]))
    assert run("encode", tmp_path / "t.txt", "-o", tmp_path / "t.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), fake_vectors(["from txt"]))


# -- token counts ----------------------------------------------------------------------------


def test_skipped_records_tokens_are_not_counted(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text(" ".join(["word"] * 20) + "\nshort text\n")  # 22 tokens (> 8), then 4
    result = run("encode", source, "-o", tmp_path / "o.npy", "--no-truncate",
                 "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "encoded 1 records (4 tokens, 0 truncated, 1 skipped)" in result.stderr


# -- error messages --------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_unwritable_output_names_the_users_path(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("a\n")
    target = "/proc/seqenc-test-output.npy"
    result = run("encode", source, "-o", target)
    assert result.exit_code == exits.EXIT_ERROR
    assert target in result.stderr
    assert ".tmp" not in result.stderr


def test_config_json_that_is_not_an_object_names_the_file(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("[]")
    result = run("info", model_dir)
    assert result.exit_code == exits.EXIT_MODEL
    assert f"{model_dir / 'config.json'}: expected a JSON object" in result.stderr
    assert "got a JSON array" in result.stderr
    assert "attribute" not in result.stderr


def test_seqenc_model_is_named_when_it_points_nowhere(monkeypatch):
    monkeypatch.setenv("SEQENC_MODEL", "/nonexistent")
    result = run("info")
    assert result.exit_code == exits.EXIT_MODEL
    assert "'/nonexistent' (set by SEQENC_MODEL)" in result.stderr


# -- replaced outputs keep their mode --------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_replaced_output_keeps_its_mode(tmp_path, fake, suffix):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    out = tmp_path / f"o{suffix}"
    out.write_bytes(b"old")
    out.chmod(0o444)
    result = run("encode", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o444
    assert out.read_bytes() != b"old"


# -- bench -----------------------------------------------------------------------------------


def test_bench_default_corpus_exists_wherever_seqenc_is_installed(monkeypatch, tmp_path):
    from seqenc import bench_cli

    assert bench_cli.default_bench_corpus().is_file()
    monkeypatch.setattr(bench_cli, "SHARED_BENCH_CORPUS", tmp_path / "missing.txt")
    corpus = bench_cli.default_bench_corpus()  # as installed, or a clone without ../shared
    assert corpus == bench_cli.SAMPLE_CORPUS and corpus.is_file()
    assert len([t for t in corpus.read_text().splitlines() if t.strip()]) >= 100
    installed = Path(cli.__file__).parent / "data" / "sample_corpus.txt"
    assert installed == bench_cli.SAMPLE_CORPUS  # inside the package (pyproject: package-data)


def test_bench_without_the_peer_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    result = run("bench", "--no-sweep")
    assert result.exit_code == exits.EXIT_EXTRA
    assert result.stderr.strip() == (
        "Error: seqenc bench needs sentence_transformers, which is not installed: "
        "pip install 'seqenc[bench]'")


def test_bench_int8_without_a_fast_exact_gemm_is_refused_in_one_line(monkeypatch):
    from seqenc import int8

    monkeypatch.setattr(int8, "_VNNI", False)  # as on a CPU without VNNI
    monkeypatch.setattr(int8, "GEMM", None)  # and without our kernels (SEQENC_KERNELS=0)
    result = run("bench", "--dtype", "float32", "--dtype", "int8", "--no-sweep")
    assert result.exit_code == exits.EXIT_USAGE
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: --dtype int8: dtype int8 needs seqenc's C kernels")


def test_bench_with_a_missing_corpus_is_a_usage_error(tmp_path):
    result = run("bench", tmp_path / "nope.txt")
    assert result.exit_code == exits.EXIT_USAGE


def test_importing_the_bench_module_does_not_import_the_peer():
    import subprocess

    code = ("import sys, seqenc.bench\n"
            "print('sentence_transformers' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_throughput_plot_y_axis_starts_at_zero():
    sweep = [{"length": L, "seqenc_tokens_per_s": 7000.0 + L, "peer_tokens_per_s": 6000.0 + L}
             for L in (16, 64, 256)]
    from seqenc.bench import sweep_figure

    (ax,) = sweep_figure(sweep).axes
    assert ax.get_ylim()[0] == 0
    assert ax.get_ylim()[1] >= 7256
