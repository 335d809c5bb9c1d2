"""How each int8 GEMM of csrc/gemm_int8.c takes its operands: the kernels' names and kinds, the
range of values each multiplies exactly (LEVELS), and the weights quantised and packed once for
it. No state: seqenc.int8 chooses the kernel and runs it."""

from __future__ import annotations

import torch
from torch import Tensor

# csrc/gemm_int8.c's kernels, best first: name -> (kind, activation format, activation dtype).
# "amx" (AMX-INT8 tiles) takes vnni512's activations and packed weights as they are.
_GEMMS = {"amx": (5, 1, torch.uint8), "vnni512": (2, 1, torch.uint8),
          "vnni256": (1, 1, torch.uint8), "avx2-u7s7": (4, 3, torch.uint8),
          "avx2-u8s7": (3, 1, torch.uint8), "avx2": (0, 2, torch.int16)}
# weights: (values per k-group, dtype); panels of GEMM_PANEL columns
_PACKING = {"amx": (4, torch.int8), "vnni512": (4, torch.int8), "vnni256": (4, torch.int8),
            "avx2-u8s7": (4, torch.int8), "avx2-u7s7": (4, torch.int8),
            "avx2": (2, torch.int16)}
# the largest |q| of the activations and of the weights each kernel takes: vpmaddubsw (the
# avx2-u* kernels) adds two uint8 x int8 products in int16, which 7-bit weights keep exact
# (csrc/gemm_int8_avx2.c); the others take full int8. Kernels with the same levels give the
# same vectors (exact sums); fewer levels, coarser steps (benchmarks/RESULTS.md).
LEVELS = {"amx": (127, 127), "vnni512": (127, 127), "vnni256": (127, 127),
          "avx2-u8s7": (127, 64), "avx2-u7s7": (63, 64), "avx2": (127, 127)}
# what the uint8 activation formats add to q (and corr = shift sum_k w[c, k] takes back off)
_SHIFT = {1: 128, 3: 64}
GEMM_PANEL = 48


def gemm_fits(m: int, k: int) -> bool:
    """Whether gemm_int8.c (and the quantisation before it) take an (M, K) weight."""
    return m % 16 == 0 and k % 8 == 0 and 0 < k <= 65536


def pack_int8(q: Tensor, gemm: str) -> tuple[Tensor, Tensor | None]:
    """(M, K) int8 weights (within LEVELS[gemm]) -> gemm_int8.c's layout for ``gemm``, panel by
    panel of GEMM_PANEL rows: (K / g, width, g) each, g = 4 int8 (VNNI, AMX, avx2-u*) or 2 int16
    (avx2); and for the kernels with uint8 activations corr = shift sum_k q[c, k] (M,) int32
    (their activations come shifted by 128, or 64 for avx2-u7s7)."""
    group, dtype = _PACKING[gemm]
    M, K = q.shape
    w = q.to(dtype)
    packed = torch.cat([w[c0:c0 + GEMM_PANEL].reshape(-1, K // group, group).transpose(0, 1)
                        .reshape(-1) for c0 in range(0, M, GEMM_PANEL)]).contiguous()
    shift = _SHIFT.get(_GEMMS[gemm][1])
    corr = None if shift is None else (q.to(torch.int32).sum(dim=1) * shift).to(torch.int32)
    return packed, corr


def quantize_weights(w: Tensor, levels: int = 127) -> tuple[Tensor, Tensor]:
    """(M, K) float weights -> (M, K) int8 within +-levels and (M,) float32 scales, one per
    output channel: w ~ q * scale[:, None]."""
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / float(levels)
    return torch.round(w / scale[:, None]).clamp_(-levels, levels).to(torch.int8), scale
