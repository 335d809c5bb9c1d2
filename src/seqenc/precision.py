"""Running the encoder in bfloat16 on hardware with and without bf16 arithmetic.

With native bf16 matmuls (AVX512-BF16/AMX CPUs, recent GPUs) the encoder is simply cast to
bf16. CPUs without them (AVX2-only x86 such as many AMD EPYC) have no bf16 dot product:
PyTorch emulates bf16 GEMMs at well under 1 GFLOP/s (fp32: ~90 per core here), and even bf16
element-wise ops cost more than fp32 ones, because each value is converted on the way in and
out. Measured on such a CPU with all-MiniLM-L6-v2, 1 thread: bf16 activations around fp32
GEMMs 97 sentences/s, fp32 130, bf16 weights with fp32 compute 132 (min cosine to fp32
0.99996). So there, ``bfloat16`` means bf16 weights and fp32 arithmetic: the weights are the
bf16 model's, the speed is fp32's, and the numbers are closer to fp32 than real bf16 compute.
"""

from __future__ import annotations

import copy
import functools
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


@functools.cache
def native_bf16_matmul(device_type: str = "cpu") -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def round_to_bf16(module: nn.Module) -> nn.Module:
    """Round every parameter to the nearest bf16 value, keeping fp32 storage. In place."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return module


def cast_encoder(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """An inference copy of ``encoder`` for ``dtype`` (the original is left untouched)."""
    clone = copy.deepcopy(encoder).eval()
    device = next(encoder.parameters()).device
    if dtype != torch.bfloat16 or native_bf16_matmul(device.type):
        return clone.to(dtype)
    log.info("no bf16 matmul instructions on this %s: bfloat16 = bf16 weights, fp32 compute",
             device.type)
    return round_to_bf16(clone)
