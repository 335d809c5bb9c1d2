"""bf16 on CPUs without native bf16 matmuls: same numbers as a native bf16 GEMM."""

from __future__ import annotations

import torch
from torch import nn

from seqenc.nn import Encoder
from seqenc.precision import Bf16Linear, cast_encoder


def test_bf16_linear_equals_native_bf16_linear_with_fp32_accumulation():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    x = torch.randn(5, 64).to(torch.bfloat16)
    ours = Bf16Linear(linear)(x)
    assert ours.dtype == torch.bfloat16
    # a bf16 GEMM multiplies bf16 values exactly and accumulates in fp32
    w, b = linear.weight.to(torch.bfloat16).double(), linear.bias.to(torch.bfloat16).double()
    exact = (x.double() @ w.T + b).to(torch.bfloat16)
    assert (ours.float() - exact.float()).abs().max().item() <= 2 ** -7 * exact.abs().max()


def test_cast_encoder_keeps_the_original_and_runs_bf16(tiny_cfg):
    encoder = Encoder(tiny_cfg).init_weights().eval()
    cast = cast_encoder(encoder, torch.bfloat16)
    assert next(encoder.parameters()).dtype == torch.float32
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 6))
    with torch.no_grad():
        fp32 = encoder(ids).last_hidden_state
        bf16 = cast(ids).last_hidden_state
    assert bf16.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(fp32, bf16.float(), dim=-1)
    assert cos.min().item() > 0.99
