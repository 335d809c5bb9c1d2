"""Our C kernels (seqenc/_kernels.c) for CPU inference, and when they apply.

``varlen_attention`` attends over sequences packed back to back in one (N, 3D) projection, so
a packed batch needs no gather into a padded layout and no mask. It runs when the optional
extension was built, the CPU has AVX2 + FMA, and the tensors are float32 on the CPU with a
head size that is a multiple of 8; otherwise seqenc runs PyTorch's kernels. Set
SEQENC_KERNELS=0 to turn ours off (to compare, or to rule them out).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

try:
    from seqenc import _kernels
except ImportError:  # built without a C compiler, or not on x86-64
    _kernels = None

ENABLED = (_kernels is not None and _kernels.supported()
           and os.environ.get("SEQENC_KERNELS", "1") != "0")


def can_attend(qkv: Tensor, n_heads: int) -> bool:
    """Whether varlen_attention takes this (N, 3D) projection."""
    head_dim = qkv.shape[-1] // (3 * n_heads)
    return (ENABLED and qkv.device.type == "cpu" and qkv.dtype == torch.float32
            and head_dim % 8 == 0 and not qkv.requires_grad)


def varlen_attention(qkv: Tensor, starts: Tensor, lengths: Tensor, n_heads: int) -> Tensor:
    """softmax(Q K^T / sqrt(hd)) V within each sequence of a packed batch.

    qkv (N, 3D): rows starts[i] .. starts[i] + lengths[i] are sequence i, columns q | k | v
    with heads of hd = D / n_heads inside each. starts, lengths: (S,) int64. -> (N, D).
    """
    qkv = qkv.contiguous()
    starts, lengths = starts.to(torch.long).contiguous(), lengths.to(torch.long).contiguous()
    N, three_d = qkv.shape
    if len(lengths) and (int(starts.min()) < 0 or int(lengths.min()) < 0
                         or int((starts + lengths).max()) > N):
        raise ValueError(f"sequence spans run outside the {N} packed rows")
    D = three_d // 3
    head_dim = D // n_heads
    out = torch.empty(N, D, dtype=qkv.dtype)
    max_len = int(lengths.max()) if len(lengths) else 0
    _kernels.attention(qkv.data_ptr(), out.data_ptr(), starts.data_ptr(), lengths.data_ptr(),
                       len(lengths), max_len, n_heads, head_dim, 1.0 / math.sqrt(head_dim),
                       torch.get_num_threads())
    return out
