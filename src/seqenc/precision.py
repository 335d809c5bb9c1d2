"""Running the encoder in bfloat16 on hardware with and without native bf16 matmuls.

CPUs without AVX512-BF16 or AMX (AVX2-only x86, e.g. many AMD EPYC) have no bf16 dot
product: PyTorch then runs bf16 GEMMs through a slow emulation, ~5x slower than float32
(measured here), while bf16 element-wise ops (LayerNorm, GELU, attention) stay fast. On such
CPUs seqenc keeps activations in bf16 and runs each linear layer as an fp32 GEMM on the
bf16 values. A product of two bf16 numbers is exact in fp32 and the sum accumulates in fp32,
exactly what a native bf16 GEMM computes, so the numbers are bf16's and the speed is fp32's.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def native_bf16_matmul(device_type: str = "cpu") -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


class Bf16Linear(nn.Module):
    """bf16 in, bf16 out; weights are bf16 values held in fp32 for the fp32 GEMM."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16).float(),
                                   requires_grad=False)
        bias = linear.bias
        self.bias = (None if bias is None else
                     nn.Parameter(bias.detach().to(torch.bfloat16).float(), requires_grad=False))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.float(), self.weight, self.bias).to(torch.bfloat16)


def cast_encoder(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """An inference copy of ``encoder`` computing in ``dtype``."""
    clone = copy.deepcopy(encoder).eval()
    device = next(encoder.parameters()).device
    if dtype != torch.bfloat16 or native_bf16_matmul(device.type):
        return clone.to(dtype)
    linears = {name: m for name, m in clone.named_modules() if isinstance(m, nn.Linear)}
    clone = clone.to(dtype)
    for name, module in linears.items():
        parent_name, _, child = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child, Bf16Linear(module))
    return clone
