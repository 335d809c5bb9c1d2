"""``seqenc bench`` (bench_cli.py) as a user first meets it: its corpus wherever seqenc is
installed, one-line refusals (no peer, no fast int8 GEMM, no corpus), and what bench.py
loads and draws without the peer."""

from __future__ import annotations

import sys
from pathlib import Path

from fake_model import run
from seqenc import cli, exits


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
