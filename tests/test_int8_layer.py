"""seqenc.int8_layer: a post-norm layer with its steps inside the int8 GEMMs' tasks gives bit
for bit what the separate kernels give, on every int8 kernel this CPU runs."""

from __future__ import annotations

import pytest
import torch

from seqenc import int8, int8_layer
from seqenc.nn import Encoder, kernels


@pytest.mark.parametrize("gemm", [
    pytest.param(name, marks=pytest.mark.skipif(
        name.split()[0] not in int8.runnable_gemms(),
        reason=f"the {name} int8 kernel does not run here"))
    for name in ("amx", "vnni512", "avx2", "avx2-u8s7", "avx2-u7s7",
                 "avx2-u7s7 down on avx2-u8s7")])
def test_epilogues_in_the_gemm_tasks_change_nothing(monkeypatch, make_cfg, gemm):
    """int8_layer.py (GELU and bias + residual + LayerNorm inside the GEMMs' tasks) gives
    bit for bit what the separate kernels give (SEQENC_INT8_SCHEDULE=tasks or openmp), on
    OpenMP's threads or tasks.c's, and runs for every layer when the schedule is fused; on
    the AVX512-VNNI kernel and on AVX2's, whose epilogues are the 8-lane kernels' (so the
    separate ones run the avx2 set too). avx2-u7s7 on every layer (EIGHT_BIT_INPUTS off): its
    requantisation epilogue stores the down projection's 7-bit rows; with the down projection
    on avx2-u8s7 (the default), the up projection's epilogue stores them as that kernel reads
    them (8 bits, q + 128)."""
    mixed = gemm.endswith("down on avx2-u8s7")
    gemm = gemm.split()[0]
    monkeypatch.setattr(int8_layer, "FUSING_GEMMS", (gemm, "avx2-u8s7") if mixed else (gemm,))
    if not mixed:
        monkeypatch.setattr(int8, "EIGHT_BIT_INPUTS", ())
    if gemm.startswith("avx2"):
        monkeypatch.setattr(kernels, "ISA", "avx2")
    torch.manual_seed(9)
    cfg = make_cfg(d_model=64, n_heads=4, d_ff=256, activation="gelu", norm="post",
                   max_positions=64)
    encoder = Encoder(cfg).eval()
    ids = torch.randint(0, 50, (5, 40))
    keep = torch.arange(40)[None, :] < torch.tensor([40, 33, 17, 3, 1])[:, None]
    monkeypatch.setattr(int8, "GEMM", gemm)
    int8.quantize_encoder(encoder, int8.calibrate(encoder, [(ids, keep)]), alpha=0.5)
    used = {m.gemm for m in encoder.modules() if isinstance(m, int8.Int8Linear)}
    assert used == ({gemm, "avx2-u8s7"} if mixed else {gemm})
    calls = []
    fused = int8_layer.post_norm_layer
    monkeypatch.setattr(int8_layer, "post_norm_layer", lambda *a: calls.append(1) or fused(*a))
    outputs = {}
    with torch.inference_mode():
        for schedule in ("fused", "fused-tasks", "tasks", "openmp"):
            monkeypatch.setattr(int8, "SCHEDULE", schedule)
            outputs[schedule] = encoder(ids, keep).last_hidden_state[keep]
    assert len(calls) == 2 * cfg.n_layers  # fused and fused-tasks
    for schedule in ("fused-tasks", "tasks", "openmp"):
        assert torch.equal(outputs["fused"], outputs[schedule])
