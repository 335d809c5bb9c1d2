"""nn/linear.py: the forward our kernel-backed linear layers share (bias, batch shape), against
nn.Linear on the same weights, with a float32 matmul standing in for the kernel."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from seqenc.nn.linear import KernelLinear


class Float32Linear(KernelLinear):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().clone())
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def matmul(self, x: Tensor) -> Tensor:
        assert x.dim() == 2  # the forward hands the kernel (N, K) rows
        return x @ self.weight.t()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4)])
def test_forward_is_nn_linears(bias, shape):
    torch.manual_seed(0)
    linear = nn.Linear(16, 24, bias=bias)
    x = torch.randn(*shape, 16)
    ours = Float32Linear(linear)(x)
    assert ours.shape == (*shape, 24)
    torch.testing.assert_close(ours, linear(x), rtol=1e-6, atol=1e-6)


def test_the_product_is_the_subclass_s():
    with pytest.raises(NotImplementedError):
        KernelLinear()(torch.randn(2, 4))
