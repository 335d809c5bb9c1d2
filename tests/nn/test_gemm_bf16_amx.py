"""Our AMX bf16 GEMM (csrc/gemm_bf16_amx.c: TDPBF16PS tiles, gemm_bf16's packed weights and
contract) against float64 on the same bf16-rounded inputs, within GEMM_BF16_ERROR's bound, on
the shapes its tiles cut unevenly (row tails, last panels of 16 or 32 columns). Runs where the
amx kernel set does (AMX-BF16 and Linux's permission for the tile data); elsewhere skipped, by
name: AVX2-only and AVX-512 CPUs without AMX run only the last test (nothing offered)."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import gemm_bf16, kernels
from threads_support import at_thread_counts

from .test_gemm_bf16 import exact, gelu_within_bound, within_bound

needs_amx = pytest.mark.skipif(
    "amx" not in kernels.AVAILABLE or not kernels.supports_bf16(),
    reason="no amx kernel set here (CPU without AMX-BF16, Linux refused the tile data, or "
           "SEQENC_KERNELS=0 / SEQENC_ISA below avx512bf16)")
# blocks of 32 rows (two row tiles): one tile short, exact, one over; a second tile of 15 rows
# (31, 47); one row over a block (33); odd tails; MiniLM's batch of ~37 x 32 (1185 = 37 x 32 + 1)
ROWS = [1, 15, 16, 17, 31, 33, 47, 67, 1185]


@needs_amx
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("k,m", [
    (32, 16),  # one A tile per row tile, one column tile
    (64, 80),  # a last panel of 32 columns (2 B tiles)
    (384, 1152), (384, 384), (384, 1536), (1536, 384),  # MiniLM's four GEMMs
    (96, 1568),  # last panel of 32 after 32 full ones; K not a power of two
])
def test_amx_gemm_within_its_bound(n, k, m):
    torch.manual_seed(n * 7 + k + m)
    x, w = torch.randn(n, k) * 3, torch.randn(m, k) * 0.05
    x[:, 0] = 300.0  # an outlier channel, as MiniLM has
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, isa="amx")
    assert gemm_bf16.last_kernel == "amx"
    assert ours.dtype == torch.float32 and ours.shape == (n, m)
    assert within_bound(ours, x, w)
    # and it is not a bf16 output: far closer than one bf16 rounding of the result
    want = exact(x, w)[0]
    assert (ours.double() - want).abs().max() < 2.0**-12 * want.abs().max()


@needs_amx
def test_amx_rounds_each_sum_to_nearest():
    """What the bound assumes of TDPBF16PS: a float32 accumulator rounded to nearest. 1 plus
    1.5 float32 half-ulps: to nearest is 1 + 2^-23 (truncation would give 1). And 2^24 + 1
    + 1 (k = 0, 2, 4: three pairs): each + 1 is a tie that rounds to even (2^24), where a
    wider accumulator rounded once would give 2^24 + 2."""
    k = 32
    x, w = torch.zeros(2, k), torch.ones(16, k)
    x[0, 0], x[0, 5] = 1.0, 3 * 2.0**-25
    x[1, 0], x[1, 2], x[1, 4] = 2.0**24, 1.0, 1.0
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), 16, isa="amx")
    assert ours[0, 0].item() == 1.0 + 2.0**-23
    assert ours[1, 0].item() == 2.0**24  # each addition rounded (measured on Sapphire Rapids)
    assert torch.all(ours == ours[:, :1])


@needs_amx
def test_amx_reads_subnormal_inputs_within_the_stated_allowance():
    """bf16 subnormals (|v| < 2^-126): the stated bound plus |a_k w_k| for each such term (AMX
    may read them as zero); everything else as before."""
    k = 64
    x, w = torch.randn(3, k), torch.randn(16, k)
    x[:, 1] = 2.0**-130  # subnormal in bf16 (and float32)
    w[:, 1] = 2.0**100  # a product of 2^-30: not small at all
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), 16, isa="amx")
    want, size = exact(x, w)
    lost = (x[:, 1:2].double() * w[:, 1].double()).abs()
    bound = gemm_bf16.GEMM_BF16_ERROR * k * size + lost + 1e-30
    assert torch.all((ours.double() - want).abs() <= bound)


@needs_amx
@pytest.mark.parametrize("n,k,m", [(17, 32, 80), (33, 384, 1536), (1185, 384, 1536)])
def test_amx_gelu_epilogue_within_its_bound(n, k, m):
    """test_gemm_bf16's GELU bound, on AMX: the GEMM's bound moves v, GELU's slope carries it,
    then GELU_BF16_RELATIVE_ERROR and one bf16 rounding."""
    torch.manual_seed(n + k)
    x, w, b = torch.randn(n, k) * 2, torch.randn(m, k) * 0.1, torch.randn(m)
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, gelu_bias=b, isa="amx")
    assert gemm_bf16.last_kernel == "amx"
    assert ours.dtype == torch.bfloat16 and ours.shape == (n, m)
    assert gelu_within_bound(ours, x, w, b)


@needs_amx
@pytest.mark.parametrize("gelu", [False, True])
def test_amx_on_two_threads_equals_one(gelu):
    torch.manual_seed(3)
    x, w, b = torch.randn(301, 384), torch.randn(1152, 384), torch.randn(1152)
    packed = gemm_bf16.pack_weight(w)
    results = at_thread_counts(
        lambda: gemm_bf16.gemm(x, packed, 1152, gelu_bias=b if gelu else None, isa="amx"))
    assert all(torch.equal(results[0], r) for r in results[1:])  # one tile sums an entry


@needs_amx
def test_amx_and_avx512bf16_agree_and_k_not_a_multiple_of_32_falls_back():
    torch.manual_seed(4)
    x, w = torch.randn(40, 384), torch.randn(96, 384)
    packed = gemm_bf16.pack_weight(w)
    amx = gemm_bf16.gemm(x, packed, 96, isa="amx")
    avx = gemm_bf16.gemm(x, packed, 96, isa="avx512bf16")
    assert gemm_bf16.last_kernel == "avx512bf16"
    assert within_bound(amx, x, w) and within_bound(avx, x, w)
    assert (amx - avx).abs().max() <= 2 * gemm_bf16.GEMM_BF16_ERROR * 384 * exact(x, w)[1].max()
    x48, w48 = torch.randn(20, 48), torch.randn(32, 48)  # K % 32 == 16: the AVX512-BF16 kernel
    ours = gemm_bf16.gemm(x48, gemm_bf16.pack_weight(w48), 32, isa="amx")
    assert gemm_bf16.last_kernel == "avx512bf16" and within_bound(ours, x48, w48)
    assert gemm_bf16.gemm(torch.zeros(0, 64), gemm_bf16.pack_weight(torch.randn(16, 64)), 16,
                             isa="amx").shape == (0, 16)


@needs_amx
def test_amx_is_the_default_where_it_runs_and_capped_by_seqenc_isa():
    assert kernels.ISA == "amx" or kernels.ISA != kernels.AVAILABLE[-1]
    x, packed = torch.randn(3, 64), gemm_bf16.pack_weight(torch.randn(16, 64))
    gemm_bf16.gemm(x, packed, 16)
    assert gemm_bf16.last_kernel == ("amx" if kernels.ISA == "amx" else "avx512bf16")


def test_amx_is_refused_where_it_does_not_run():
    if "amx" in kernels.AVAILABLE or not kernels.supports_bf16():
        pytest.skip("this CPU runs the amx set, or has no bf16 GEMM at all")
    with pytest.raises(ValueError, match="amx"):
        gemm_bf16.gemm(torch.randn(2, 64), gemm_bf16.pack_weight(torch.randn(16, 64)), 16,
                          isa="amx")


@needs_amx
@pytest.mark.parametrize("n", [1, 5, 37, 301])
def test_amx_and_avx512bf16_gelu_epilogues_agree_bit_for_bit(n):
    """Both kernels' GELU epilogues (8 vectors at a time: 4 rows x 2 column tiles on AMX, 8 of a
    register tile's up to 8 x 3 vectors on AVX512-BF16, partial groups at the tails) on exactly
    the same float32 sums: each row of W a unit vector, so x W^T is x's bf16 values whatever
    the summation order. m = 80: an odd column tile count (a block with one column tile on AMX,
    a last panel of 32 on AVX512-BF16). A dense sweep of [-13, 13], within the bound too."""
    k, m = 64, 80
    x = torch.linspace(-13, 13, n * k).view(n, k).bfloat16().float()
    w = torch.eye(k)[torch.arange(m) % k]  # (m, k): column c reads x[:, c % k]
    b = torch.linspace(-0.02, 0.02, m)
    packed = gemm_bf16.pack_weight(w)
    amx = gemm_bf16.gemm(x, packed, m, gelu_bias=b, isa="amx")
    assert gemm_bf16.last_kernel == "amx"
    avx = gemm_bf16.gemm(x, packed, m, gelu_bias=b, isa="avx512bf16")
    assert torch.equal(amx.view(torch.int16), avx.view(torch.int16))
    assert gelu_within_bound(amx, x, w, b)
