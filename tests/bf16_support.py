"""For the bf16 tests of the models built on precision.bf16_encoder (cross-encoder, sparse
encoder)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqenc.nn import kernels
from seqenc.precision import Bf16Linear

needs_bf16_gemm = pytest.mark.skipif(not kernels.supports_bf16(),
                                     reason="no avx512bf16 kernel set here (no bf16 GEMM)")


def gemm_inputs_only(model: nn.Module, original: nn.Module) -> None:
    """Asserts that ``model`` is bf16_encoder's copy of ``original``: every linear our GEMM
    takes is a Bf16Linear, every other tensor float32."""
    for name, linear in original.named_modules():
        if isinstance(linear, nn.Linear):
            twin = model.get_submodule(name)
            assert isinstance(twin, Bf16Linear) == Bf16Linear.takes(linear), name
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(b.dtype == torch.float32 for n, b in model.named_buffers()
               if not n.endswith("packed"))
