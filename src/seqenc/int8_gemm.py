"""Our int8 GEMMs (csrc/gemm_int8.c) as bare products: int8 operands in, exact int32 sums out,
on the kernel seqenc.int8 would choose or a named one. For tests (the sums against int64) and
seqenc bench's int8 GEMM probe; the model's layers run them through int8.Int8Linear, which
quantises, multiplies and dequantises in one call."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import int8
from .int8_layout import _GEMMS, _SHIFT, LEVELS, gemm_fits, pack_int8


def int8_mm(a: Tensor, w: Tensor, gemm: str | None = None) -> Tensor:
    """a (N, K) int8 times w (M, K) int8, transposed: (N, M) int32 sums from gemm_int8.c's
    kernel ``gemm`` (default int8.GEMM), exact for values within LEVELS[gemm] on every CPU
    (unlike torch._int_mm without VNNI; others are refused). Packs w on every call: for tests
    and one-off products (int8_matmul packs it once)."""
    return int8_matmul(w, gemm)(a)


def int8_matmul(w: Tensor, gemm: str | None = None) -> Callable[[Tensor], Tensor]:
    """int8_mm with w packed once: a function a (N, K) int8 -> (N, M) int32 sums (e.g. for
    seqenc bench's int8 GEMM probe)."""
    from .nn.kernels import _kernels

    gemm = gemm or int8.GEMM
    runs = int8.runnable_gemms()
    if gemm not in runs:
        raise ValueError(f"int8 GEMM {gemm!r} does not run here (runs: {runs})")
    (M, K), top_a, top_w = w.shape, *LEVELS[gemm]
    if w.dtype != torch.int8 or not gemm_fits(M, K):
        raise ValueError(f"int8_mm takes int8 (N, K) and (M, K), M % 16 == K % 8 == 0: got "
                         f"{w.dtype} {tuple(w.shape)} weights")
    if w.numel() and w.abs().max() > top_w:
        raise ValueError(f"int8 GEMM {gemm!r} takes |a| <= {top_a}, |w| <= {top_w}")
    kind, fmt, dtype = _GEMMS[gemm]
    packed, corr = pack_int8(w, gemm)

    def product(a: Tensor) -> Tensor:
        N = a.shape[0]
        if a.dtype != torch.int8 or a.dim() != 2 or a.shape[1] != K:
            raise ValueError(f"int8_mm takes int8 (N, K) and (M, K), M % 16 == K % 8 == 0: got "
                             f"{a.dtype} {tuple(a.shape)} and {w.dtype} {tuple(w.shape)}")
        if a.numel() and a.abs().max() > top_a:
            raise ValueError(f"int8 GEMM {gemm!r} takes |a| <= {top_a}, |w| <= {top_w}")
        a = a.to(torch.int16) if dtype == torch.int16 else (
            a.to(torch.int16) + _SHIFT[fmt]).to(torch.uint8)
        a = a.contiguous()
        out = torch.empty(N, M, dtype=torch.int32)
        _kernels.gemm_int8(kind, a.data_ptr(), packed.data_ptr(),
                           0 if corr is None else corr.data_ptr(), 0, 0, out.data_ptr(), N, M,
                           K, M, torch.get_num_threads(), int8.schedule() == "openmp")
        return out

    return product
