"""Each kernel set the CPU has (avx2, avx512, avx512bf16, amx; see nn/kernels.py) against float64,
within the bounds nn/kernels.py states. Sets the CPU lacks are skipped, and say so: on an
AVX2-only machine only the avx2 cases run."""

from __future__ import annotations

import math

import pytest
import torch

from seqenc.nn import kernels

from .test_kernels import assert_within, attention_bound, reference

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="C kernels not built/enabled")
EACH_SET = pytest.mark.parametrize("isa", [
    pytest.param(isa, marks=pytest.mark.skipif(isa not in kernels.AVAILABLE,
                                               reason=f"this CPU has no {isa}"))
    for isa in kernels.ISAS])


def gelu64(v: torch.Tensor) -> torch.Tensor:
    v = v.double()
    return v * 0.5 * torch.erfc(-v / math.sqrt(2.0))


def test_the_best_set_is_chosen():
    assert kernels.AVAILABLE and kernels.ISA == kernels.AVAILABLE[-1] or kernels.ISA
    has_avx512 = "avx512" in torch.backends.cpu.get_cpu_capability().lower()
    assert ("avx512" in kernels.AVAILABLE) == (has_avx512 or "avx512" in kernels.AVAILABLE)
    assert ("avx512bf16" in kernels.AVAILABLE) <= ("avx512" in kernels.AVAILABLE)
    assert ("amx" in kernels.AVAILABLE) <= ("avx512bf16" in kernels.AVAILABLE)


@EACH_SET
@pytest.mark.parametrize("width", [48, 64, 80])  # 48: not a multiple of 16 -> 8 lanes everywhere;
# 64, 80: four vectors at a time on the AVX-512 sets (gelu512x4), and 80 one more after them
def test_bias_gelu_within_its_bound(isa, width):
    if isa in ("avx512bf16", "amx"):
        pytest.skip("same float32 kernel as avx512")
    torch.manual_seed(0)
    x = torch.cat([torch.linspace(-13, 13, 37 * width - 8 * width).view(-1, width),
                   torch.randn(8, width) * 4])
    bias = torch.randn(width) * 0.1
    v = (x + bias).double()  # the kernel adds in float32: same sum up to its own rounding
    ours = kernels.bias_gelu_(x, bias, isa=isa).double()
    assert kernels.last_lanes == kernels.lanes(isa, torch.float32, width)
    assert kernels.last_lanes == (512 if isa != "avx2" and width % 16 == 0 else 256)
    bound = (kernels.GELU_RELATIVE_ERROR + 2.0**-23) * gelu64(v).abs() + 1e-36
    assert torch.all((ours - gelu64(v)).abs() <= bound)


@EACH_SET
@pytest.mark.parametrize("width", [48, 384])
def test_add_layer_norm_within_its_bound(isa, width):
    if isa in ("avx512bf16", "amx"):
        pytest.skip("same float32 kernel as avx512")
    torch.manual_seed(1)
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    y, bias, residual = torch.randn(19, width) * 3, torch.randn(width), torch.randn(19, width) + 5
    s = y.double() + bias.double() + residual.double()
    xhat = (s - s.mean(-1, keepdim=True)) / s.std(-1, unbiased=False, keepdim=True)
    exact = xhat * norm.weight.double() + norm.bias.double()
    with torch.no_grad():
        ours = kernels.add_layer_norm_(y, bias, residual, norm.weight, norm.bias, norm.eps,
                                       isa=isa).double()
    assert kernels.last_lanes == kernels.lanes(isa, torch.float32, width)
    bound = kernels.LAYER_NORM_ERROR * (norm.weight.double().abs() * (1 + xhat.abs())
                                        + norm.bias.double().abs())
    assert torch.all((ours - exact).abs() <= bound)


@pytest.mark.skipif("avx512" not in kernels.AVAILABLE, reason="this CPU has no avx512")
def test_add_layer_norm_rows_do_not_depend_on_their_neighbours():
    """The 16-lane float32 LayerNorm runs rows in groups (four sum chains side by side) and
    keeps y + bias + residual in y itself: every row must still get the bits it gets alone,
    for every group remainder and rows that span two of encode's 16-row tasks, and a residual
    that is y itself must act as a copy of y (read before written)."""
    torch.manual_seed(7)
    b, gamma, beta = torch.randn(384), torch.randn(384), torch.randn(384)
    for n in (1, 2, 3, 4, 5, 6, 7, 9, 21):
        y, residual = torch.randn(n, 384) * 3, torch.randn(n, 384) + 2
        together = kernels.add_layer_norm_(y.clone(), b, residual, gamma, beta, 1e-12,
                                           isa="avx512")
        alone = torch.cat([kernels.add_layer_norm_(y[i:i + 1].clone(), b, residual[i:i + 1],
                                                   gamma, beta, 1e-12, isa="avx512")
                           for i in range(n)])
        assert torch.equal(together, alone), n
        same = y.clone()
        assert torch.equal(kernels.add_layer_norm_(same, b, same, gamma, beta, 1e-12,
                                                   isa="avx512"),
                           kernels.add_layer_norm_(y.clone(), b, y.clone(), gamma, beta, 1e-12,
                                                   isa="avx512")), n


needs_bf16 = pytest.mark.skipif("avx512bf16" not in kernels.AVAILABLE,
                                reason="this CPU has no avx512bf16 (bf16 kernels not exercised)")


@needs_bf16
def test_bf16_bias_gelu_within_its_bound():
    torch.manual_seed(2)
    x = (torch.randn(33, 64) * 4).bfloat16()
    bias = torch.randn(64).bfloat16()
    exact = gelu64(x.double() + bias.double())
    ours = kernels.bias_gelu_(x, bias, isa="avx512bf16")
    assert ours.dtype == torch.bfloat16 and kernels.last_lanes == 512
    rel = kernels.GELU_RELATIVE_ERROR + 2.0**-23 + kernels.BF16_ROUNDING
    assert torch.all((ours.double() - exact).abs() <= rel * exact.abs() * (1 + 1e-6) + 1e-36)


@needs_bf16
def test_bf16_add_layer_norm_within_its_bound():
    torch.manual_seed(3)
    norm = torch.nn.LayerNorm(384, eps=1e-12).bfloat16()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    y, residual = (torch.randn(21, 384) * 3).bfloat16(), (torch.randn(21, 384) + 5).bfloat16()
    bias = torch.randn(384).bfloat16()
    s = y.double() + bias.double() + residual.double()
    xhat = (s - s.mean(-1, keepdim=True)) / s.std(-1, unbiased=False, keepdim=True)
    exact = xhat * norm.weight.double() + norm.bias.double()
    with torch.no_grad():
        ours = kernels.add_layer_norm_(y, bias, residual, norm.weight, norm.bias, norm.eps,
                                       isa="avx512bf16").double()
    assert kernels.last_lanes == 512
    float32_bound = kernels.LAYER_NORM_ERROR * (norm.weight.double().abs() * (1 + xhat.abs())
                                                + norm.bias.double().abs())
    bound = float32_bound * (1 + kernels.BF16_ROUNDING) + kernels.BF16_ROUNDING * exact.abs()
    assert torch.all((ours - exact).abs() <= bound)


@pytest.mark.parametrize("head_dim", [16, 24, 32, 64])  # 24: the 8-wide tail of the output
def test_bf16_attention_rounds_the_float32_result_once(head_dim):
    """bf16 in, bf16 out, read and rounded inside the kernel (plain AVX2 instructions, so on
    every set): bit for bit the float32 kernel's result on the same values, rounded to nearest
    even as PyTorch rounds, bias and all."""
    torch.manual_seed(4)
    qkv = (torch.randn(30, 3 * 2 * head_dim) * 3).bfloat16()
    bias = torch.randn(3 * 2 * head_dim).bfloat16()
    lengths = torch.tensor([17, 1, 12])
    starts = lengths.cumsum(0) - lengths
    for b in (None, bias):
        ours = kernels.varlen_attention(qkv, starts, lengths, 2, b)
        assert ours.dtype == torch.bfloat16
        want = kernels.varlen_attention(qkv.float(), starts, lengths, 2,
                                        None if b is None else b.float())
        assert torch.equal(ours, want.bfloat16())


@EACH_SET
@pytest.mark.parametrize("head_dim", [16, 24, 32, 64])  # 24: 8 lanes on every set
@pytest.mark.parametrize("lengths", [[1], [7, 8, 9], [15, 16, 17, 33, 57], [130, 64, 5]])
def test_attention_within_its_bound(isa, head_dim, lengths):
    """attention512.c (16 lanes: AVX-512 sets, head sizes divisible by 16; query blocks of 8
    and fewer, 1 to 4 vectors of keys in registers (57: 4 with a partial last, 4 queries at a
    time), blocks of 32 and 16 keys past 64) is held to the same float64 bound as attention.c."""
    torch.manual_seed(head_dim + len(lengths))
    n_heads = 3
    qkv = torch.randn(sum(lengths), 3 * n_heads * head_dim) * 2
    bias = torch.randn(3 * n_heads * head_dim)
    lengths_t = torch.tensor(lengths)
    ours = kernels.varlen_attention(qkv, lengths_t.cumsum(0) - lengths_t, lengths_t, n_heads,
                                    bias, isa=isa)
    assert kernels.last_lanes == (512 if isa != "avx2" and head_dim % 16 == 0 else 256)
    D = n_heads * head_dim
    biased = qkv + bias  # the kernel adds the q and v biases itself (k's cannot matter)
    exact = reference(biased, lengths, n_heads)
    assert_within(ours, exact, attention_bound(biased, lengths, n_heads)
                  + 2.0**-23 * bias[2 * D:].abs().max().item())


@EACH_SET
@pytest.mark.parametrize("threads", [2, 3, 5, 8])
@pytest.mark.parametrize("lengths", [[37], [9, 20], [5, 6, 7]])
def test_attention_splits_heads_among_threads_exactly(isa, threads, lengths):
    """With fewer sequences than 2 x threads attention512.c splits each sequence's heads into
    groups (12 heads in 10 groups: 6 of 2, none empty); every head's arithmetic is its own, so
    the result is bit for bit the one-thread result."""
    torch.manual_seed(threads)
    qkv, bias = torch.randn(sum(lengths), 3 * 12 * 32) * 2, torch.randn(3 * 12 * 32)
    lengths_t = torch.tensor(lengths)
    starts = lengths_t.cumsum(0) - lengths_t
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = kernels.varlen_attention(qkv, starts, lengths_t, 12, bias, isa=isa)
        torch.set_num_threads(threads)
        ours = kernels.varlen_attention(qkv, starts, lengths_t, 12, bias, isa=isa)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(ours, want)


@needs_bf16
@pytest.mark.parametrize("head_dim", [24, 32])  # 8 and 16 lanes
def test_attention_writes_bf16_from_float32_rounded_once(head_dim):
    """A float32 projection in, bf16 out (what a bf16 GEMM after attention reads): bit for
    bit the float32 result rounded to nearest even."""
    torch.manual_seed(5)
    qkv, bias = torch.randn(40, 3 * 2 * head_dim) * 3, torch.randn(3 * 2 * head_dim)
    lengths = torch.tensor([23, 1, 16])
    starts = lengths.cumsum(0) - lengths
    ours = kernels.varlen_attention(qkv, starts, lengths, 2, bias, out_dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    want = kernels.varlen_attention(qkv, starts, lengths, 2, bias)
    assert torch.equal(ours, want.bfloat16())


@pytest.mark.skipif(not kernels.supports_bf16(), reason="avx512bf16 set not in use here")
def test_layer_norm_writes_a_bf16_copy_of_its_float32_result():
    """LayerNorm's bf16 copy (the next bf16 GEMM's input, no conversion pass): the float32
    result rounded once, bit for bit, and the float32 result unchanged."""
    torch.manual_seed(6)
    y, residual = torch.randn(21, 384) * 3, torch.randn(21, 384)
    b, gamma, beta = torch.randn(384), torch.randn(384), torch.randn(384)
    copy = torch.empty(21, 384, dtype=torch.bfloat16)
    got = kernels.add_layer_norm_(y.clone(), b, residual, gamma, beta, 1e-12, copy_bf16=copy)
    assert torch.equal(got, kernels.add_layer_norm_(y.clone(), b, residual, gamma, beta, 1e-12))
    assert torch.equal(copy, got.bfloat16())


def test_bf16_copies_are_refused_where_no_kernel_writes_them():
    if not kernels.AVAILABLE:
        pytest.skip("no kernels")
    x, bias = torch.randn(4, 48), torch.randn(48)  # 48: a multiple of 16
    with pytest.raises(ValueError, match="avx512bf16"):
        kernels.add_layer_norm_(x, bias, x.clone(), bias, bias, 1e-5, isa="avx2",
                                copy_bf16=torch.empty(4, 48, dtype=torch.bfloat16))
    x, bias = torch.randn(4, 40), torch.randn(40)
    with pytest.raises(ValueError, match="divisible by 16"):
        kernels.add_layer_norm_(x, bias, x.clone(), bias, bias, 1e-5,
                                copy_bf16=torch.empty(4, 40, dtype=torch.bfloat16))


def test_sets_and_dtypes_the_kernels_do_not_have_are_refused():
    if not kernels.AVAILABLE:
        pytest.skip("no kernels")
    missing = [isa for isa in kernels.ISAS if isa not in kernels.AVAILABLE]
    for isa in missing:
        with pytest.raises(ValueError, match="not available on this CPU"):
            kernels.bias_gelu_(torch.randn(2, 16), torch.randn(16), isa=isa)
    with pytest.raises(ValueError, match="no avx2 kernel"):
        kernels.bias_gelu_(torch.randn(2, 16).bfloat16(), torch.randn(16).bfloat16(), isa="avx2")
    with pytest.raises(ValueError, match="vector of 16"):
        kernels.bias_gelu_(torch.randn(2, 16).bfloat16(), torch.randn(16))  # mixed dtypes


@EACH_SET
def test_peak_probes_run(isa):
    kinds = {"avx2": [0], "avx512": [1], "avx512bf16": [2], "amx": [2, 4]}[isa]
    for kind in kinds:
        assert kernels._kernels.peak(kind, 10_000, 1) > 0
