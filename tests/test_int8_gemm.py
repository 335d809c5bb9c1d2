"""csrc/gemm_int8.c through seqenc.int8_gemm and int8: exact int32 sums against int64 on every
kernel this CPU runs (over the whole range of values each takes: int8, or 7 bits where
vpmaddubsw's int16 sums would otherwise saturate), the quantisation that feeds them, and
Int8Linear on each kernel."""

from __future__ import annotations

import pytest
import torch

from seqenc import int8, int8_gemm
from seqenc.nn import kernels
from threads_support import at_thread_counts

GEMMS = int8.runnable_gemms()
each_gemm = pytest.mark.parametrize("gemm", [
    pytest.param(name, marks=pytest.mark.skipif(name not in GEMMS, reason=f"{name} does not run "
                                                 f"here (runs: {GEMMS}, {kernels.describe()})"))
    for name in ("amx", "vnni512", "vnni256", "avx2-u7s7", "avx2-u8s7", "avx2")])

# (N, M, K): a single row, rows and columns past whole register tiles and panels (48 columns,
# 64 rows), MiniLM's shapes, and the longest K whose sums are still bounded below 2^31
SHAPES = [(1, 16, 8), (37, 48, 64), (70, 112, 40), (130, 1152, 384), (65, 384, 1536),
          (9, 32, 65536)]


def operands(case: str, n: int, m: int, k: int, g: torch.Generator, gemm: str) -> tuple:
    """(a, w) int8 within the kernel's levels (int8.LEVELS: 127, or 63 / 64 for the avx2-u*
    kernels' 7-bit operands), "max" standing for the largest value it takes."""
    top_a, top_w = int8.LEVELS[gemm]

    def rand(top, *shape):
        return torch.randint(-top, top + 1, shape, dtype=torch.int8, generator=g)

    def full(value, *shape):
        return torch.full(shape, value, dtype=torch.int8)

    if case == "random":
        return rand(top_a, n, k), rand(top_w, m, k)
    if case == "+max everywhere":  # the largest sums (and, shifted by 128, 255 x w each)
        return full(top_a, n, k), full(top_w, m, k)
    if case == "+max x -max":  # the most negative int16 pair sums of vpmaddubsw (255 x -64)
        return full(top_a, n, k), full(-top_w, m, k)
    if case == "-max x +max":  # the most negative sums
        return full(-top_a, n, k), full(top_w, m, k)
    if case == "-max everywhere":
        return full(-top_a, n, k), full(-top_w, m, k)
    # random signs at full size: pairs of +-127^2 (what saturated vpmaddubsw in oneDNN's AVX2)
    return ((rand(top_a, n, k).sign() * top_a).to(torch.int8),
            (rand(top_w, m, k).sign() * top_w).to(torch.int8))


@each_gemm
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", ["random", "+max everywhere", "+max x -max", "-max x +max",
                                  "-max everywhere", "+-max random signs"])
def test_int32_sums_are_exact(gemm, shape, case):
    n, m, k = shape
    if k == 65536 and case == "random":
        pytest.skip("the extreme cases cover K = 65536")
    a, w = operands(case, n, m, k, torch.Generator().manual_seed(n + m + k), gemm)
    got = int8_gemm.int8_mm(a, w, gemm)
    want = a.long() @ w.long().t()
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), want), (got.long() - want).abs().max()


@each_gemm
@pytest.mark.parametrize("schedule", ["tasks", "openmp"])  # csrc/tasks.c's threads, OpenMP's
def test_threads_split_the_same_sums(gemm, schedule, monkeypatch):
    monkeypatch.setattr(int8, "SCHEDULE", schedule)
    a, w = operands("random", 333, 1152, 384, torch.Generator().manual_seed(5), gemm)
    want = a.long() @ w.long().t()
    for got in at_thread_counts(lambda: int8_gemm.int8_mm(a, w, gemm)):
        assert torch.equal(got.long(), want)


@each_gemm
@pytest.mark.parametrize("smooth", [False, True])
def test_quantisation_matches_pytorch_ops(gemm, smooth):
    """The kernel's q and scales are quantize_rows' (scales bit for bit; q within one step where
    x * (1 / scale) and x / scale round differently), stored as the GEMM reads them."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(50, 96, generator=g) * torch.logspace(-3, 3, 50)[:, None]
    x[3] = 0  # an all-zero row: scale 1, q 0
    x[7, 5] = -1e4  # one outlier sets the row's scale
    mul = torch.rand(96, generator=g) + 0.5 if smooth else None
    levels = int8.LEVELS[gemm][0]  # 127, or 63 for avx2-u7s7 (stored as q + 64)
    q, scale = int8.quantize_rows_kernel(x, gemm, mul)
    q = q.to(torch.int16) - (128 if levels == 127 else 64) * (q.dtype == torch.uint8)
    want_q, want_scale = int8.quantize_rows(x if mul is None else x * mul, levels)
    assert torch.equal(scale[torch.arange(50) != 3], want_scale[torch.arange(50) != 3])
    assert scale[3] == 1 and not q[3].any()
    assert (q - want_q).abs().max() <= 1 and q.abs().max() == levels
    assert (q != want_q).float().mean() < 1e-3


@pytest.mark.parametrize("gemm", [pytest.param(name, marks=pytest.mark.skipif(
    name not in GEMMS, reason=f"{name} does not run here")) for name in int8.WIDE_GEMMS])
@pytest.mark.parametrize("k", [80, 96, 112, 384])
@pytest.mark.parametrize("smooth", [False, True])
def test_the_16_lane_quantiser_gives_the_8_lane_ones_bits(gemm, k, smooth, monkeypatch):
    """The fused schedule quantises in the GEMM's tasks with 16 lanes (64 values narrowed by
    packs at a time, then 16 at a time: K % 64 of 0, 16, 32, 48), the separate one with the
    8-lane quantize_int8: the same q and scales, so the same exact sums and outputs."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(40, k, generator=g) * torch.logspace(-4, 4, 40)[:, None]
    x[5] = 0
    x[9, 3] = 2e4
    linear = torch.nn.Linear(k, 64)
    layer = int8.Int8Linear(linear, torch.rand(k, generator=g) + 0.5 if smooth else None,
                            gemm=gemm)
    out = {}
    for schedule in ("fused", "tasks"):
        monkeypatch.setattr(int8, "SCHEDULE", schedule)
        out[schedule] = layer.matmul(x)
    assert torch.equal(out["fused"], out["tasks"])


@each_gemm
@pytest.mark.parametrize("smooth", [False, True])
def test_int8_linear_gives_the_onednn_paths_result(gemm, smooth, monkeypatch):
    """Same int32 sums and the same (de)quantisation arithmetic: bit for bit what torch._int_mm
    with the AVX-512 (de)quantisation kernels gives, where those run; within a float32
    rounding of the PyTorch ops' result elsewhere."""
    torch.manual_seed(7)
    linear = torch.nn.Linear(384, 1152)
    factors = torch.rand(384) * 4 + 0.25 if smooth else None
    x = torch.randn(77, 384) * 2
    ours = int8.Int8Linear(linear, factors, gemm=gemm)
    assert ours.gemm == gemm and ours.packed is not None
    got = ours(x)
    top_a, top_w = int8.LEVELS[gemm]
    assert ours.weight_t.abs().max() == top_w
    if top_a != 127 or top_w != 127:
        # 7-bit operands (avx2-u*): no other path computes with them, so the kernel's
        # arithmetic in PyTorch ops: q = x mul (1 / scale) rounded, exact sums, then
        # sum * row scale * column scale + bias in float32
        xs = x if factors is None else x * ours.inv_smooth
        s = xs.abs().amax(dim=1) / float(top_a)
        q = torch.round(xs * (1.0 / s)[:, None]).clamp(-top_a, top_a)
        acc = (q.double() @ ours.weight_t.double()).float()
        assert torch.equal(got, acc * s[:, None] * ours.weight_scale + linear.bias.detach())
        return
    if int8._fast_kernels() and int8._VNNI:
        assert torch.equal(got, int8.Int8Linear(linear, factors, gemm=None)(x))
        return
    monkeypatch.setattr(int8, "_fast_kernels", lambda: False)
    want = int8.Int8Linear(linear, factors, gemm=None)(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4 * want.abs().max().item())


def test_shapes_the_kernels_do_not_take_fall_back():
    linear = torch.nn.Linear(64, 20)  # 20 outputs: not a multiple of 16
    assert int8.Int8Linear(linear).gemm is None
    if GEMMS:
        with pytest.raises(ValueError, match="does not run here for"):
            int8.Int8Linear(linear, gemm=GEMMS[0])
    with pytest.raises(ValueError, match="does not run here"):
        int8_gemm.int8_mm(torch.zeros(2, 16, dtype=torch.int8),
                          torch.zeros(16, 16, dtype=torch.int8), "no-such-kernel")


def test_the_best_kernel_is_the_default():
    assert int8.GEMM == (GEMMS[0] if GEMMS else None) or int8.GEMM in GEMMS  # or the env's
    if not kernels.ENABLED:
        assert GEMMS == []
    if kernels.ENABLED and kernels._kernels.supported():
        # every CPU our kernels run on has exact int8 GEMMs, the vpmaddubsw ones included
        assert {"avx2-u7s7", "avx2-u8s7", "avx2"} <= set(GEMMS)
        # chosen at run time: AMX where the CPU (and Linux) allow it, else a VNNI kernel where
        # the CPU has VNNI, else avx2-u7s7
        assert GEMMS[0] == next(name for name in ("amx", "vnni512", "vnni256", "avx2-u7s7")
                                if name in GEMMS)
    if kernels.ISA == "avx2":  # amx's epilogues are vnni512's, AVX-512
        assert "vnni512" not in GEMMS and "amx" not in GEMMS


@pytest.mark.parametrize("gemm", ["amx", "vnni512", "avx2-u7s7", "avx2"])
def test_layers_get_their_kernel(monkeypatch, gemm):
    """quantize_encoder gives every layer GEMM, but the FFN down projection avx2-u8s7 (8-bit
    activations) where GEMM is avx2-u7s7 (int8.EIGHT_BIT_INPUTS)."""
    monkeypatch.setattr(int8, "GEMM", gemm)
    want = {name: gemm for name in ("attention.qkv", "attention.out", "feed_forward.up")}
    want["feed_forward.down"] = "avx2-u8s7" if gemm == "avx2-u7s7" else gemm
    for name, kernel in want.items():
        assert int8.layer_gemm(f"layers.3.{name}") == kernel


@pytest.mark.skipif(not {"avx2-u7s7", "avx2-u8s7"} <= set(GEMMS), reason="no AVX2 kernels here")
@pytest.mark.parametrize("gemm", ["avx2-u7s7", "avx2-u8s7"])
@pytest.mark.parametrize("k", [4, 12, 1540])
def test_odd_k_groups_are_summed(gemm, k):
    """K % 8 == 4 (which gemm_int8 takes, Int8Linear does not): avx2-u7s7 adds its k-groups
    of 4 two at a time, and the last one alone."""
    a, w = operands("+-max random signs", 21, 32, k, torch.Generator().manual_seed(k), gemm)
    kind, fmt, _ = int8._GEMMS[gemm]
    shifted = (a.to(torch.int16) + int8._SHIFT[fmt]).to(torch.uint8).contiguous()
    packed, corr = int8.pack_int8(w, gemm)
    out = torch.empty(21, 32, dtype=torch.int32)
    kernels._kernels.gemm_int8(kind, shifted.data_ptr(), packed.data_ptr(), corr.data_ptr(), 0,
                               0, out.data_ptr(), 21, 32, k, 32, 2)
    assert torch.equal(out.long(), a.long() @ w.long().t())


@pytest.mark.skipif("avx2-u8s7" not in GEMMS, reason="no AVX2 kernels here")
def test_operands_past_a_kernels_levels_are_refused():
    """vpmaddubsw's int16 sums would saturate: int8_mm refuses them rather than go wrong."""
    ones = torch.ones(16, 16, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"\|w\| <= 64"):
        int8_gemm.int8_mm(ones, ones * 65, "avx2-u8s7")
    with pytest.raises(ValueError, match=r"\|a\| <= 63"):
        int8_gemm.int8_mm(ones * 64, ones, "avx2-u7s7")


@pytest.mark.skipif(not GEMMS, reason="our int8 kernels do not run here")
def test_concurrent_callers_and_a_forked_child_get_exact_sums():
    """csrc/tasks.c runs one job at a time on its helpers (a second caller runs its tasks
    inline), and a child forked after the helpers started has none and still computes."""
    import os
    import threading

    a, w = operands("random", 300, 384, 384, torch.Generator().manual_seed(8), int8.GEMM)
    want = a.long() @ w.long().t()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    failures = []

    def work():
        for _ in range(20):
            if not torch.equal(int8_gemm.int8_mm(a, w).long(), want):
                failures.append(1)

    try:
        callers = [threading.Thread(target=work) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        assert not failures
        # the child uses no PyTorch op (libgomp, which PyTorch's ops run on, hangs in a child
        # forked after it ran): operands prepared here, the kernel called, numpy compares
        kind, fmt, dtype = int8._GEMMS[int8.GEMM]
        shifted = a.to(torch.int16) if dtype == torch.int16 else (
            a.to(torch.int16) + int8._SHIFT[fmt]).to(torch.uint8)
        packed, corr = int8.pack_int8(w, int8.GEMM)
        out = torch.zeros(300, 384, dtype=torch.int32)
        expected = want.numpy()
        pid = os.fork()
        if pid == 0:  # exit 0 only with the right sums, computed on 2 threads
            kernels._kernels.gemm_int8(kind, shifted.data_ptr(), packed.data_ptr(),
                                       0 if corr is None else corr.data_ptr(), 0, 0,
                                       out.data_ptr(), 300, 384, 384, 384, 2)
            os._exit(0 if (out.numpy() == expected).all() else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        torch.set_num_threads(threads)
