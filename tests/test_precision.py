"""bf16: on CPUs without native bf16 matmuls bf16's weights and fp32's arithmetic; on CPUs with
our bf16 GEMM (avx512bf16) bf16 GEMM inputs and everything else float32."""

from __future__ import annotations

import pytest
import torch

from seqenc import precision
from seqenc.nn import Encoder, gemm_bf16, kernels
from seqenc.precision import Bf16Linear, bf16_encoder, cast_encoder, round_to_bf16


def test_round_to_bf16_gives_representable_values_in_fp32_storage():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    original = linear.weight.detach().clone()
    round_to_bf16(linear)
    assert linear.weight.dtype == torch.float32
    assert torch.equal(linear.weight, original.to(torch.bfloat16).float())
    assert not torch.equal(linear.weight, original)  # some values did change


@pytest.mark.parametrize("native", [False, True])
def test_cast_encoder_keeps_the_original(tiny_cfg, monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16_matmul", lambda device_type="cpu": native)
    encoder = Encoder(tiny_cfg).init_weights().eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cast = cast_encoder(encoder, torch.bfloat16)
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 6))
    with torch.no_grad():
        fp32 = encoder(ids).last_hidden_state
        bf16 = cast(ids).last_hidden_state
    # native: real bf16 compute; otherwise fp32 compute on bf16-rounded weights
    assert bf16.dtype == (torch.bfloat16 if native else torch.float32)
    if not native:
        expected = Encoder(tiny_cfg).eval()
        expected.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            assert torch.equal(bf16, round_to_bf16(expected)(ids).last_hidden_state)
    cos = torch.nn.functional.cosine_similarity(fp32, bf16.float(), dim=-1)
    assert cos.min().item() > 0.99


# ---- bf16 GEMM inputs only (CPUs with the avx512bf16 kernel set) ---------------------------

needs_bf16_gemm = pytest.mark.skipif(not kernels.supports_bf16(),
                                     reason="no avx512bf16 kernel set here (no bf16 GEMM)")


def bert_cfg(make_cfg):
    return make_cfg(d_model=64, n_heads=4, d_ff=128, n_layers=2, norm="post", activation="gelu")


@needs_bf16_gemm
def test_bf16_linear_rounds_only_its_inputs():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = Bf16Linear(linear)
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        y = layer(x)
    assert y.dtype == torch.float32 and y.shape == (3, 5, 48)
    x64 = x.to(torch.bfloat16).double()
    w64 = linear.weight.detach().to(torch.bfloat16).double()
    want = x64 @ w64.t() + linear.bias.detach().double()  # bias float32, not rounded
    size = x64.abs() @ w64.abs().t() + linear.bias.detach().double().abs()
    assert torch.all((y.double() - want).abs() <= gemm_bf16.GEMM_BF16_ERROR * 65 * size + 1e-30)


@needs_bf16_gemm
def test_bf16_linear_without_our_kernels_computes_the_same(monkeypatch):
    linear = torch.nn.Linear(32, 16)
    layer = Bf16Linear(linear)
    x = torch.randn(9, 32)
    with torch.inference_mode():
        ours = layer(x)
        monkeypatch.setattr(kernels, "ENABLED", False)  # PyTorch's ops on the same bf16 values
        theirs = layer(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@needs_bf16_gemm
def test_bf16_encoder_is_float32_but_for_its_gemm_inputs(make_cfg, spy, monkeypatch):
    """Against float64 on the same bf16-rounded GEMM inputs (emulated: a float64 encoder
    whose linears round their inputs and weights to bf16), the bf16 encoder is as close as
    the float32 encoder is to float64 (plus float32 roundings), far closer than the encoder
    cast to bf16, and it keeps the fused path. One allowance: the up GEMM's GELU (good to
    GELU_BF16_RELATIVE_ERROR before its bf16 rounding) may round a value within that of a bf16
    tie the other way; there the emulation takes our neighbour (and only there)."""
    torch.manual_seed(0)
    cfg = bert_cfg(make_cfg)
    encoder = Encoder(cfg).init_weights(std=0.2).eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    ours = bf16_encoder(encoder)
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    assert sum(isinstance(m, Bf16Linear) for m in ours.modules()) == 4 * cfg.n_layers
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    ids = torch.randint(5, cfg.vocab_size, (3, 11))
    keep = torch.arange(11)[None, :] < torch.tensor([11, 7, 2])[:, None]
    ups: list[torch.Tensor] = []  # our up GEMMs' bf16 GELU outputs, in order
    gemm = gemm_bf16.gemm

    def keep_ups(*args, **kwargs) -> torch.Tensor:
        out = gemm(*args, **kwargs)
        if kwargs.get("gelu_bias") is not None:
            ups.append(out)
        return out

    monkeypatch.setattr(gemm_bf16, "gemm", keep_ups)
    calls = spy(kernels, "fused_post_norm_layer")
    with torch.inference_mode():
        got = ours(ids, keep).last_hidden_state[keep].double()
        assert len(calls) == cfg.n_layers, "the bf16 encoder left the fused path"
    assert len(ups) == cfg.n_layers

    def round_down_input(g: torch.Tensor) -> torch.Tensor:
        nearest, our = g.to(torch.bfloat16).double(), ups.pop(0).double().view(g.shape)
        # g within 1e-5 |g| of the midpoint of nearest and ours: ours is then nearest's other
        # neighbour (a bf16 step is 2**-8 |g| or more), so only that near-tie case is excused
        near = (g - (nearest + our) / 2).abs() <= gemm_bf16.GELU_BF16_RELATIVE_ERROR * g.abs()
        return torch.where(near, our, nearest)

    emulated = Encoder(cfg).eval().double()
    emulated.load_state_dict({k: v.double() for k, v in before.items()})
    for m in emulated.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data = m.weight.data.to(torch.bfloat16).double()
            down = m.in_features == cfg.d_ff
            m.register_forward_pre_hook(lambda _m, a, down=down: (
                round_down_input(a[0]) if down else a[0].to(torch.bfloat16).double(),))
    with torch.inference_mode():
        want = emulated(ids, keep).last_hidden_state[keep]
        cast = cast_encoder(encoder, torch.bfloat16)(ids, keep).last_hidden_state[keep].double()
    error = (got - want).abs().max().item()
    assert error <= 1e-5 * want.abs().max().item(), error
    assert error < (cast - want).abs().max().item() / 100


def test_bf16_encoder_falls_back_to_the_cast_where_the_gemm_cannot_run(tiny_cfg, monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", False)  # as on an AVX2-only CPU
    encoder = Encoder(tiny_cfg).init_weights().eval()
    ours = bf16_encoder(encoder)
    assert not any(isinstance(m, Bf16Linear) for m in ours.modules())
    expected = cast_encoder(encoder, torch.bfloat16)
    assert {k: v.dtype for k, v in ours.state_dict().items()} == {
        k: v.dtype for k, v in expected.state_dict().items()}


def test_an_inference_copy_is_current_until_its_source_changes(tiny_cfg):
    """made_from/is_current (what encode's bf16/int8 copies go by): unchanged weights keep the
    copy; each way weights change in place or anew makes it stale, fused optimizer steps
    (which bump no version counter) included."""
    from seqenc.precision import is_current, made_from

    source = Encoder(tiny_cfg).eval()

    def fresh_copy() -> torch.nn.Module:
        copy = made_from(bf16_encoder(source), source)
        assert is_current(copy, source)
        return copy

    copy = fresh_copy()
    torch.nn.Linear(4, 4)  # a module registered elsewhere: the weights are walked again, unchanged
    assert is_current(copy, source) and not is_current(copy, Encoder(tiny_cfg))
    assert is_current(source, source)  # not made by made_from: taken as it is
    up = source.layers[0].feed_forward.up
    with torch.no_grad():
        up.weight.mul_(1.5)
    assert not is_current(copy, source)
    copy = fresh_copy()
    source.load_state_dict(Encoder(tiny_cfg).state_dict())
    assert not is_current(copy, source)
    copy = fresh_copy()
    up.weight = torch.nn.Parameter(up.weight.detach().clone())  # a new tensor, same values
    assert not is_current(copy, source)
    copy = fresh_copy()
    for p in source.parameters():
        p.grad = torch.ones_like(p)
    optimizer = torch.optim.AdamW(source.parameters(), lr=1e-3, fused=True)
    optimizer.step()  # (in torch 2.13 a fused step moves no version counter)
    assert not is_current(copy, source)


def test_a_storage_replaced_through_data_makes_the_copy_stale(tiny_cfg):
    """``p.data = x`` (old-style manual updates, Module._apply) moves no version counter; the
    new storage's data_ptr tells, even after two such writes, where glibc would hand the first
    storage's freed block to the second (the record keeps the storages it saw alive). In-place
    writes through ``p.data`` stay unseen: the limit is_current's docstring states."""
    from seqenc.precision import is_current, made_from

    source = Encoder(tiny_cfg).eval()
    weight = source.layers[0].feed_forward.up.weight
    for _ in range(20):
        copy = made_from(bf16_encoder(source), source)
        weight.data = weight.data * 0.5
        weight.data = weight.data * 0.5
        assert not is_current(copy, source)
    copy = made_from(bf16_encoder(source), source)
    weight.data.mul_(2)
    assert is_current(copy, source)  # (stale: no version counter nor storage moved)
    with torch.no_grad():
        weight.detach().mul_(2)  # the way to write that is seen
    assert not is_current(copy, source)
