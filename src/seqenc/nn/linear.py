"""Linear layers whose product is one of our kernels (precision.Bf16Linear: the bf16 GEMM,
int8.Int8Linear: the int8 GEMMs). The fused layer (kernels.matmul, kernels.PostNormWeights)
calls their ``matmul``; the forward around it, bias and batch shape, is the same for each and
lives here once."""

from __future__ import annotations

from torch import Tensor, nn


class KernelLinear(nn.Module):
    """y = x W^T + b over the last dimension, x W^T from the subclass's ``matmul``; ``bias``
    (M,) float32 or None and in_features / out_features as nn.Linear's."""

    in_features: int
    out_features: int
    bias: Tensor | None

    def matmul(self, x: Tensor) -> Tensor:
        """x W^T without the bias: (N, K) -> (N, M) float32, on the subclass's kernel."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = self.matmul(x.reshape(-1, shape[-1]))
        if self.bias is not None:
            y += self.bias
        return y.reshape(*shape[:-1], self.out_features)
