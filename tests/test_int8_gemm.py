"""csrc/gemm_int8.c through seqenc.int8: exact int32 sums against int64 on every kernel this CPU
runs, the quantisation that feeds them, and Int8Linear on each kernel."""

from __future__ import annotations

import pytest
import torch

from seqenc import int8
from seqenc.nn import kernels

GEMMS = int8.runnable_gemms()
each_gemm = pytest.mark.parametrize("gemm", [
    pytest.param(name, marks=pytest.mark.skipif(name not in GEMMS, reason=f"{name} does not run "
                                                 f"here (runs: {GEMMS}, {kernels.describe()})"))
    for name in ("vnni512", "vnni256", "avx2")])

# (N, M, K): a single row, rows and columns past whole register tiles and panels (48 columns,
# 64 rows), MiniLM's shapes, and the longest K whose sums are still bounded below 2^31
SHAPES = [(1, 16, 8), (37, 48, 64), (70, 112, 40), (130, 1152, 384), (65, 384, 1536),
          (9, 32, 65536)]


def operands(case: str, n: int, m: int, k: int, g: torch.Generator) -> tuple:
    def rand(*shape):
        return torch.randint(-127, 128, shape, dtype=torch.int8, generator=g)

    def full(value, *shape):
        return torch.full(shape, value, dtype=torch.int8)

    if case == "random":
        return rand(n, k), rand(m, k)
    if case == "+127 everywhere":  # the largest sums (and, shifted by 128, 255 x 127 each)
        return full(127, n, k), full(127, m, k)
    if case == "-127 x +127":  # the most negative sums
        return full(-127, n, k), full(127, m, k)
    if case == "-127 everywhere":
        return full(-127, n, k), full(-127, m, k)
    # random signs at full size: pairs of +-127^2 (what saturated vpmaddubsw in oneDNN's AVX2)
    return (rand(n, k).sign() * 127).to(torch.int8), (rand(m, k).sign() * 127).to(torch.int8)


@each_gemm
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", ["random", "+127 everywhere", "-127 x +127", "-127 everywhere",
                                  "+-127 random signs"])
def test_int32_sums_are_exact(gemm, shape, case):
    n, m, k = shape
    if k == 65536 and case == "random":
        pytest.skip("the extreme cases cover K = 65536")
    a, w = operands(case, n, m, k, torch.Generator().manual_seed(n + m + k))
    got = int8.int8_mm(a, w, gemm)
    want = a.long() @ w.long().t()
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), want), (got.long() - want).abs().max()


@each_gemm
@pytest.mark.parametrize("schedule", ["tasks", "openmp"])  # csrc/tasks.c's threads, OpenMP's
def test_threads_split_the_same_sums(gemm, schedule, monkeypatch):
    monkeypatch.setattr(int8, "SCHEDULE", schedule)
    g = torch.Generator().manual_seed(5)
    a = torch.randint(-127, 128, (333, 384), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (1152, 384), dtype=torch.int8, generator=g)
    want = a.long() @ w.long().t()
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            assert torch.equal(int8.int8_mm(a, w, gemm).long(), want)
    finally:
        torch.set_num_threads(threads)


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
    q, scale = int8.quantize_rows_kernel(x, gemm, mul)
    q = q.to(torch.int16) - (128 if q.dtype == torch.uint8 else 0)
    want_q, want_scale = int8.quantize_rows(x if mul is None else x * mul)
    assert torch.equal(scale[torch.arange(50) != 3], want_scale[torch.arange(50) != 3])
    assert scale[3] == 1 and not q[3].any()
    assert (q - want_q).abs().max() <= 1 and q.abs().max() == 127
    assert (q != want_q).float().mean() < 1e-3


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
        int8.int8_mm(torch.zeros(2, 16, dtype=torch.int8), torch.zeros(16, 16, dtype=torch.int8),
                     "no-such-kernel")


def test_the_best_kernel_is_the_default():
    assert int8.GEMM == (GEMMS[0] if GEMMS else None) or int8.GEMM in GEMMS  # or the env's
    if not kernels.ENABLED:
        assert GEMMS == []
    if kernels.ENABLED and kernels._kernels.supported():
        assert "avx2" in GEMMS  # every CPU our kernels run on has an exact int8 GEMM
    if kernels.ISA == "avx2":
        assert "vnni512" not in GEMMS


@pytest.mark.skipif(not GEMMS, reason="our int8 kernels do not run here")
def test_concurrent_callers_and_a_forked_child_get_exact_sums():
    """csrc/tasks.c runs one job at a time on its helpers (a second caller runs its tasks
    inline), and a child forked after the helpers started has none and still computes."""
    import os
    import threading

    g = torch.Generator().manual_seed(8)
    a = torch.randint(-127, 128, (300, 384), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (384, 384), dtype=torch.int8, generator=g)
    want = a.long() @ w.long().t()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    failures = []

    def work():
        for _ in range(20):
            if not torch.equal(int8.int8_mm(a, w).long(), want):
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
        kind, _, dtype = int8._GEMMS[int8.GEMM]
        shifted = a.to(torch.int16) if dtype == torch.int16 else (a.to(torch.int16) + 128).to(
            torch.uint8)
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
