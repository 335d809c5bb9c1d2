"""The throughput benchmark's plumbing (its speed figures live in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqenc.bench import MIN_MEAN_COSINE, gemm_gflops, min_cosine, model_flops, run_benchmark, save
from seqenc.model import SentenceEncoder

pytest.importorskip("sentence_transformers")


def test_model_flops_counts_projections_and_attention():
    model = SentenceEncoder.from_pretrained()
    D, F, N = 384, 1536, 6
    L = 10
    expected = N * (2 * L * (4 * D * D + 2 * D * F) + 4 * L * L * D)
    assert model_flops(model, np.array([L])) == expected
    assert model_flops(model, np.array([L, L])) == 2 * expected


def test_min_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert min_cosine(a, a) == pytest.approx(1.0)
    assert min_cosine(a, np.array([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(0.0)


def test_gemm_probe_is_positive():
    assert gemm_gflops(torch.float32, n=256, budget_s=0.2) > 0
    assert gemm_gflops(torch.int8, n=256, budget_s=0.2) > 0


def test_benchmark_runs_and_checks_agreement(tmp_path):
    texts = ["A man is playing a guitar.", "Stocks fell sharply on Tuesday.", "Hi", "x " * 50]
    lines = []
    result = run_benchmark(texts, dtypes=("float32",), rounds=1, sweep_lengths=(16,),
                           sweep_texts=2, log=lines.append)
    (mode,) = result.modes
    ours, peer = mode.engines
    assert ours.name == "seqenc fp32" and peer.name == "sentence-transformers fp32"
    assert peer.min_cosine_to_fp32 >= 0.99999 and peer.seqenc_ratio > 0
    assert len(ours.seconds) == 1 and ours.sentences_per_s > 0 and ours.seqenc_ratio == 1
    assert mode.gemm_gflops["fp32"] > 0
    assert result.sweep and result.sweep[0]["length"] == 16
    assert any("seqenc" in line and "x" in line for line in lines)
    save(result, tmp_path / "r.json", tmp_path / "r.png")
    assert json.loads((tmp_path / "r.json").read_text())["modes"][0]["dtype"] == "float32"
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_int8_mode_races_the_fastest_other_precision():
    from seqenc import int8
    from seqenc.precision import native_bf16_matmul

    if int8.GEMM is None and not int8._VNNI:
        pytest.skip("int8 is refused here (test_int8_is_refused_without_a_fast_exact_gemm)")
    corpus = Path(__file__).resolve().parents[1] / "examples" / "corpus.txt"
    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()][:40]
    lines = []
    result = run_benchmark(texts, dtypes=("int8",), rounds=1, sweep_lengths=(), peers=(),
                           log=lines.append)
    (mode,) = result.modes
    ours, other = mode.engines
    assert (ours.name, ours.precision) == ("seqenc int8", "int8")
    assert other.name == ("seqenc bf16" if native_bf16_matmul() else "seqenc fp32")
    assert MIN_MEAN_COSINE["int8"] <= ours.mean_cosine_to_fp32 < 1.0
    assert ours.min_cosine_to_fp32 <= ours.mean_cosine_to_fp32
    assert other.mean_cosine_to_fp32 > ours.mean_cosine_to_fp32  # bf16/fp32 is closer
    assert other.seqenc_ratio > 0 and ours.seqenc_ratio == 1
    assert mode.gemm_gflops["int8"] > 0
    assert any("seqenc int8: cosine to seqenc fp32 min" in line for line in lines)


def test_int8_is_refused_without_a_fast_exact_gemm(monkeypatch):
    from seqenc import int8

    monkeypatch.setattr(int8, "_VNNI", False)  # no VNNI for oneDNN
    monkeypatch.setattr(int8, "GEMM", None)  # and none of our int8 GEMMs (SEQENC_KERNELS=0)
    with pytest.raises(ValueError, match="needs seqenc's C kernels .* or a CPU with VNNI"):
        run_benchmark(["a", "b"], dtypes=("float32", "int8"))


ONNX_PEERS_CHECK = """
import sys
from pathlib import Path
from seqenc.bench import min_cosine
from seqenc.model import SentenceEncoder
from seqenc.peers import build_peers

model = SentenceEncoder.from_pretrained()
texts = ["A man is playing a guitar.", "Stocks fell sharply on Tuesday.", "Hi", "x " * 50]
ours = model.encode(texts)
workdir = Path(sys.argv[1])
peers = build_peers(model, "float32", ("onnxruntime", "openvino"), batch_size=3, threads=1,
                    workdir=workdir)
assert [p.name for p in peers] == ["onnxruntime fp32", "openvino fp32"], [p.name for p in peers]
for peer in peers:  # batches of 3, sorted by length: padding is exercised
    cos = min_cosine(peer.encode(texts), ours)
    assert cos > 0.99999, (peer.name, cos)
default, streamed = build_peers(model, "bfloat16", ("openvino",), 3, 2, workdir=workdir,
                                streams=(1, 2))
assert default.name.endswith("(default)"), default.name
assert streamed.name.endswith("(default, 2 streams)"), streamed.name
for peer in (default, streamed):
    assert min_cosine(peer.encode(texts), ours) > 0.999, peer.name
# two batches in flight: every row still lands where it belongs (texts in batches of 3)
(ort2,) = build_peers(model, "float32", ("onnxruntime",), 3, 2, workdir=workdir, streams=(2,))
assert ort2.name == "onnxruntime fp32 (2 streams)", ort2.name
many = texts * 4
assert min_cosine(ort2.encode(many), model.encode(many)) > 0.99999
print("ok", default.name)
"""


def test_onnx_peers_agree_with_seqenc(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    # in a child process: ONNX Runtime's and OpenVINO's thread pools and libraries stay out
    # of the test process (the bench loads them only in `seqenc bench`'s own process)
    done = subprocess.run([sys.executable, "-c", ONNX_PEERS_CHECK, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok openvino")


def test_unknown_peers_are_refused():
    from seqenc.peers import build_peers

    with pytest.raises(ValueError, match="unknown peer"):
        build_peers(SentenceEncoder.from_pretrained(), "float32", ("fastembed",), 32, 1)


def test_fma_peaks_per_precision():
    from seqenc.bench import fma_peaks
    from seqenc.nn import kernels

    peaks = fma_peaks(1, seconds=0.01)
    if not kernels.AVAILABLE:
        assert peaks == {}
        return
    assert peaks["fp32"] > 0 and peaks["bf16"] > 0
