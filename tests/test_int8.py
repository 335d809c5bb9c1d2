"""seqenc.int8: int8 weights per output channel, activations per token, against float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqenc import int8
from seqenc.nn import Encoder, kernels


def test_rows_round_trip_within_half_a_step():
    torch.manual_seed(0)
    x = torch.randn(40, 64) * torch.logspace(-3, 2, 40)[:, None]
    q, scale = int8.quantize_rows(x)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert torch.all((q.float() * scale[:, None] - x).abs() <= scale[:, None] / 2 * (1 + 1e-6))


@pytest.mark.parametrize("kernel", [False, True])
def test_int8_linear_within_its_bound(monkeypatch, kernel):
    if kernel and not int8._fast_kernels():
        pytest.skip("no AVX-512 (de)quantisation kernels on this CPU: PyTorch ops ran")
    if not kernel:
        monkeypatch.setattr(int8, "_fast_kernels", lambda: False)
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(37, 64) * 3
    x[:, 5] *= 30  # an outlier channel
    layer = int8.Int8Linear(linear)
    exact = x.double() @ linear.weight.double().t() + linear.bias.double()
    ours = layer(x).double()
    # |x w - xq wq| <= |x| dw + |w| dx + dx dw per product, dx = sx/2, dw = sw/2
    sx = x.abs().amax(1).double()[:, None] / 127
    sw = linear.weight.abs().amax(1).double()[None, :] / 127
    bound = (x.abs().double().sum(1, keepdim=True) * sw / 2
             + sx / 2 * linear.weight.abs().double().sum(1)[None, :] + 64 * sx * sw / 4)
    assert torch.all((ours - exact).abs() <= bound * 1.001 + 1e-5)


def test_kernels_and_torch_ops_agree(monkeypatch):
    if not int8._fast_kernels():
        pytest.skip("no AVX-512 (de)quantisation kernels on this CPU")
    torch.manual_seed(2)
    layer = int8.Int8Linear(torch.nn.Linear(32, 16))
    x = torch.randn(21, 32)
    fast = layer(x)
    monkeypatch.setattr(int8, "_fast_kernels", lambda: False)
    assert torch.allclose(fast, layer(x), rtol=1e-6, atol=1e-6)


def test_quantized_encoder_keeps_its_outputs(make_cfg, monkeypatch):
    torch.manual_seed(3)
    cfg = make_cfg(d_model=64, n_heads=4, d_ff=128, activation="gelu", norm="post",
                   max_positions=64)
    encoder = Encoder(cfg).eval()
    ids = torch.randint(0, 50, (3, 20))
    keep = torch.arange(20)[None, :] < torch.tensor([20, 11, 3])[:, None]
    stats = int8.calibrate(encoder, [(ids, keep)])
    with torch.inference_mode():
        exact = encoder(ids, keep).last_hidden_state[keep]
    names = int8.quantize_encoder(encoder, stats, alpha=0.5, skip=lambda n: n.endswith("down"))
    assert len(names) == 3 * cfg.n_layers and not any(n.endswith("down") for n in names)
    # the layer plan fuses from nn.Linear weights; int8 layers run through the modules
    monkeypatch.setattr(kernels, "ENABLED", False)
    with torch.inference_mode():
        ours = encoder(ids, keep).last_hidden_state[keep]
    assert F.cosine_similarity(ours, exact).min() > 0.99
