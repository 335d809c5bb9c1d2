"""The throughput benchmark's plumbing (its speed figures live in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqenc.bench import gemm_gflops, min_cosine, model_flops, run_benchmark, save
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


def test_benchmark_runs_and_checks_agreement(tmp_path):
    texts = ["A man is playing a guitar.", "Stocks fell sharply on Tuesday.", "Hi", "x " * 50]
    lines = []
    result = run_benchmark(texts, dtypes=("float32",), rounds=1, sweep_lengths=(16,),
                           sweep_texts=2, log=lines.append)
    (mode,) = result.modes
    assert mode.min_cosine_to_peer >= 0.99999 and mode.ratio > 0
    assert len(mode.seqenc.seconds) == 1 and mode.seqenc.sentences_per_s > 0
    assert result.sweep and result.sweep[0]["length"] == 16
    assert any("ratio" in line for line in lines)
    save(result, tmp_path / "r.json", tmp_path / "r.png")
    assert json.loads((tmp_path / "r.json").read_text())["modes"][0]["dtype"] == "float32"
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
