"""EncoderLayer against the real peer, torch.nn.TransformerEncoderLayer, on the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqenc.nn import EncoderLayer

D, H, FF = 32, 4, 64

# every form torch accepts: names, functions and modules
ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu",
    "F.relu": F.relu,
    "F.gelu": F.gelu,
    "nn.ReLU": nn.ReLU(),
    "nn.GELU": nn.GELU(),
    "nn.GELU-tanh": nn.GELU(approximate="tanh"),
}


def perturb(module: nn.Module) -> nn.Module:
    """Move every parameter off its init (LayerNorm 1/0, zero biases) so all of them matter."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module


def keep_mask(B: int, T: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def torch_grad_modes(act_name: str) -> list:
    """Grad modes to run torch in: no_grad may take its fused fast path, grad-enabled never does.

    torch's fast path only knows relu/gelu and computes nn.GELU(approximate="tanh") as exact GELU,
    so for that activation only the slow path (the module's own definition) is the reference.
    """
    if act_name == "nn.GELU-tanh":
        return [torch.enable_grad]
    return [torch.no_grad, torch.enable_grad]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tf"])
@pytest.mark.parametrize("act_name", list(ACTIVATIONS))
@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
def test_equals_torch_transformer_encoder_layer(norm_first, act_name, batch_first, bias, masked):
    torch.manual_seed(0)
    peer = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.1, activation=ACTIVATIONS[act_name], batch_first=batch_first,
        norm_first=norm_first, bias=bias,
    )
    peer = perturb(peer).eval()
    ours = EncoderLayer.from_torch(peer).eval()
    assert ours.norm == ("pre" if norm_first else "post")
    assert (ours.attention.qkv.bias is not None) == bias

    x = torch.randn(3, 7, D)  # (B, T, D)
    keep = keep_mask(3, 7, [7, 4, 1]) if masked else torch.ones(3, 7, dtype=torch.bool)
    with torch.no_grad():
        got = ours(x, keep if masked else None)
    for grad_mode in torch_grad_modes(act_name):
        with grad_mode():
            src = x if batch_first else x.transpose(0, 1)  # torch's default is (T, B, D)
            want = peer(src, src_key_padding_mask=~keep if masked else None)
            want = (want if batch_first else want.transpose(0, 1)).detach()
        # padding positions carry no meaning (torch's fast path may zero them): real ones only
        diff = (got - want)[keep].abs().max().item()
        assert diff < 1e-5, f"{grad_mode.__name__}: max abs diff {diff:.2e}"


def test_converted_layer_keeps_train_mode_and_dropout():
    peer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.25, batch_first=True)
    ours = EncoderLayer.from_torch(peer)
    assert ours.training
    assert ours.cfg.dropout == 0.25 and ours.cfg.attention_dropout == 0.25
    assert not EncoderLayer.from_torch(peer.eval()).training


class TutorialLayer(nn.Module):
    """The hand-written layer of many tutorials: LayerNorm on the sub-layer output, then add."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.norm1(self.self_attn(x, x, x)[0]))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return x + self.dropout(self.norm2(ff))


def test_tutorial_layer_converts_with_res_post():
    torch.manual_seed(0)
    tutorial = perturb(TutorialLayer(D, H, FF)).eval()
    ours = EncoderLayer.from_torch(tutorial, norm="res_post").eval()
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        diff = (ours(x) - tutorial(x)).abs().max().item()
    assert diff < 1e-5
    # and the other placements really are different functions of the same weights
    with torch.no_grad():
        post = EncoderLayer.from_torch(tutorial, norm="post").eval()(x)
    assert (post - tutorial(x)).abs().max().item() > 1e-2


def test_tutorial_layer_without_norm_raises():
    with pytest.raises(ValueError, match="norm_first.*norm="):
        EncoderLayer.from_torch(TutorialLayer(D, H, FF))


def test_from_torch_rejects_unconvertible_modules():
    with pytest.raises(ValueError, match="self_attn"):
        EncoderLayer.from_torch(nn.Linear(D, D))
    odd = TutorialLayer(D, H, FF)
    odd.activation = torch.tanh
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer.from_torch(odd, norm="pre")
    odd.norm2 = nn.LayerNorm(D, eps=1e-6)
    with pytest.raises(ValueError, match="eps"):
        EncoderLayer.from_torch(odd, norm="pre", activation="relu")


@pytest.mark.parametrize("norm", ["post", "pre", "res_post"])
def test_layer_mask_wrong_shape_raises(make_cfg, norm):
    layer = EncoderLayer(make_cfg(norm=norm))
    x = torch.randn(2, 5, 32)
    for bad in (torch.ones(2, 4, dtype=torch.bool), torch.ones(5, dtype=torch.bool),
                torch.ones(2, 5, 5, dtype=torch.bool)):
        with pytest.raises(ValueError, match="attention_mask"):
            layer(x, bad)


@pytest.mark.parametrize("norm", ["post", "pre", "res_post"])
def test_layer_need_weights_matches_fused_attention(make_cfg, norm):
    torch.manual_seed(0)
    layer = perturb(EncoderLayer(make_cfg(norm=norm))).eval()
    x = torch.randn(3, 6, 32)
    keep = keep_mask(3, 6, [6, 2, 4])
    with torch.no_grad():
        fused = layer(x, keep)
        explicit, weights = layer(x, keep, need_weights=True)
    assert weights.shape == (3, 4, 6, 6)  # (B, H, T, T)
    assert (fused - explicit).abs().max().item() < 1e-5


def test_dropout_active_in_train_mode_only(make_cfg):
    torch.manual_seed(0)
    layer = EncoderLayer(make_cfg(dropout=0.2, attention_dropout=0.2))
    x = torch.randn(2, 5, 32)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    with torch.no_grad():
        assert torch.equal(layer(x), layer(x))


def test_train_mode_matches_torch_with_dropout_disabled():
    # with p=0 the training-mode (slow) path of torch must agree too, gradients included
    torch.manual_seed(0)
    peer = perturb(nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True))
    ours = EncoderLayer.from_torch(peer)
    x = torch.randn(2, 5, D, requires_grad=True)
    (g_ours,) = torch.autograd.grad(ours(x).square().sum(), x)
    (g_peer,) = torch.autograd.grad(peer(x).square().sum(), x)
    assert (g_ours - g_peer).abs().max().item() < 1e-4
