"""seqenc.int8: int8 weights per output channel, activations per token, against float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("path", ["torch", "avx512 (de)quantisation", *int8.runnable_gemms()])
def test_int8_linear_within_its_bound(monkeypatch, path):
    """Every way an Int8Linear multiplies: PyTorch's ops, torch._int_mm between the AVX-512
    (de)quantisation kernels, and each of gemm_int8.c's kernels that runs here."""
    if path == "avx512 (de)quantisation" and not int8._fast_kernels():
        pytest.skip("no AVX-512 (de)quantisation kernels on this CPU: PyTorch ops ran")
    if path == "torch":
        monkeypatch.setattr(int8, "_fast_kernels", lambda: False)
    gemm = path if path in int8.runnable_gemms() else None
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(37, 64) * 3
    x[:, 5] *= 30  # an outlier channel
    layer = int8.Int8Linear(linear, gemm=gemm)
    assert layer.gemm == gemm
    exact = x.double() @ linear.weight.double().t() + linear.bias.double()
    ours = layer(x).double()
    # |x w - xq wq| <= |x| dw + |w| dx + dx dw per product, dx = sx/2, dw = sw/2, the steps
    # of 127 levels (63 or 64 for the avx2-u* kernels' 7-bit operands)
    top_a, top_w = int8.LEVELS[gemm] if gemm else (127, 127)
    sx = x.abs().amax(1).double()[:, None] / top_a
    sw = linear.weight.abs().amax(1).double()[None, :] / top_w
    bound = (x.abs().double().sum(1, keepdim=True) * sw / 2
             + sx / 2 * linear.weight.abs().double().sum(1)[None, :] + 64 * sx * sw / 4)
    assert torch.all((ours - exact).abs() <= bound * 1.001 + 1e-5)


@pytest.mark.parametrize("smooth", [False, True])
def test_kernels_and_torch_ops_agree(monkeypatch, smooth):
    if not int8._fast_kernels():
        pytest.skip("no AVX-512 (de)quantisation kernels on this CPU")
    torch.manual_seed(2)
    factors = torch.rand(32) * 4 + 0.25 if smooth else None  # the kernel applies 1 / factors
    layer = int8.Int8Linear(torch.nn.Linear(32, 16), factors)
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
    with torch.inference_mode():
        fused = encoder(ids, keep).last_hidden_state[keep]  # int8 GEMMs + fused epilogues
        monkeypatch.setattr(kernels, "ENABLED", False)
        ours = encoder(ids, keep).last_hidden_state[keep]  # the modules, PyTorch's ops
    assert F.cosine_similarity(ours, exact).min() > 0.99
    assert torch.allclose(fused, ours, atol=1e-4)


def test_encoder_gemms_names_the_kernels_its_layers_run(make_cfg, monkeypatch):
    """What the benchmarks print: the kernels the int8 copy's layers were made for (int8.GEMM
    then, the FFN down projection's own beside avx2-u7s7), whatever int8.GEMM says later."""
    cfg = make_cfg(d_model=64, n_heads=4, d_ff=128, activation="gelu", norm="post",
                   max_positions=64)
    for gemm in [None, *int8.runnable_gemms()]:
        monkeypatch.setattr(int8, "GEMM", gemm)
        encoder = Encoder(cfg).eval()
        int8.quantize_encoder(encoder)
        monkeypatch.setattr(int8, "GEMM", "vnni512" if gemm != "vnni512" else "avx2")
        want = {"onednn"} if gemm is None else {gemm}
        if gemm == "avx2-u7s7":
            want.add("avx2-u8s7")
        assert int8.encoder_gemms(encoder) == tuple(sorted(want))


def test_a_saved_state_loads_only_into_a_kernel_of_its_layout(tmp_path):
    """An int8 layer's state names its kernel: amx, vnni512 and vnni256 read each other's; any
    other pair is refused before a buffer is written (avx2-u* took another kernel's state
    without an error and computed wrong values)."""
    runs = int8.runnable_gemms()
    if len(runs) < 2:
        pytest.skip(f"one int8 kernel of ours or none here ({runs})")
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(64, 48), torch.randn(5, 64)
    shared = {"amx", "vnni512", "vnni256"}
    for saved in runs:
        torch.save(int8.Int8Linear(lin, gemm=saved).state_dict(), tmp_path / "int8.pt")
        state = torch.load(tmp_path / "int8.pt", weights_only=True)
        for gemm in runs:
            layer = int8.Int8Linear(torch.nn.Linear(64, 48), gemm=gemm)
            if saved == gemm or {saved, gemm} <= shared:
                layer.load_state_dict(state)
                assert torch.equal(layer(x), int8.Int8Linear(lin, gemm=gemm)(x))
                continue
            before = [b.clone() for b in layer.buffers()]
            with pytest.raises(ValueError, match=f"made for the {saved} kernel.* runs {gemm},"):
                layer.load_state_dict(state)
            assert all(torch.equal(b, was) for b, was in zip(layer.buffers(), before, strict=True))


CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus.txt"
needs_int8 = pytest.mark.skipif(int8.GEMM is None and not int8._VNNI,
                                reason="no int8 GEMM of ours, no VNNI: int8 is refused")


@needs_int8
@pytest.mark.parametrize("gemm", ["default", *(name for name in int8.runnable_gemms()
                                              if int8.LEVELS[name] != (127, 127))])
def test_encode_int8_holds_the_quality_bar(monkeypatch, gemm):
    """encode(dtype="int8") with the default model on 200 real sentences: mean cosine to fp32
    >= 0.995 (the issue's bar), the worst >= 0.985 (short texts are the worst: 0.992 measured
    with 8-bit operands), through the fused layers with int8 GEMMs; with the default kernel and
    with each of the 7-bit ones (avx2-u*), whose worst is >= 0.975 (measured: mean 0.9968 /
    0.9977, worst 0.981 / 0.988, "Absolutely not." and "Yes.")."""
    pytest.importorskip("tokenizers")
    from seqenc.model import SentenceEncoder

    if gemm != "default":
        monkeypatch.setattr(int8, "GEMM", gemm)
    texts = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    model = SentenceEncoder.from_pretrained()
    fp32 = model.encode(texts)
    model._encoders.pop(torch.int8, None)
    quantized = model.encoder_for("int8")
    assert {m.gemm for m in quantized.modules() if isinstance(m, int8.Int8Linear)} == {
        int8.layer_gemm(name) for name in (".qkv", ".up", ".down")}
    assert sum(isinstance(m, int8.Int8Linear) for m in quantized.modules()) == 4 * 6
    assert model.encoder_for("float32") is model.encoder  # the fp32 model is left alone
    calls = []
    fused = kernels.fused_post_norm_layer
    monkeypatch.setattr(kernels, "fused_post_norm_layer",
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    got = model.encode(texts, dtype="int8")
    assert calls or not kernels.ENABLED
    cos = (got * fp32).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(fp32, axis=1)
    seven_bit = any(int8.LEVELS[m.gemm] != (127, 127) for m in quantized.modules()
                    if isinstance(m, int8.Int8Linear) and m.gemm)
    assert cos.mean() >= 0.995 and cos.min() >= (0.975 if seven_bit else 0.985), (
        cos.mean(), cos.min())


@needs_int8
@pytest.mark.skipif(len(int8.runnable_gemms()) < 2, reason="one int8 GEMM runs here at most")
def test_every_int8_gemm_encodes_the_same_vectors():
    """Exact int32 sums and one quantisation: the kernel a CPU runs cannot change the vectors,
    so the quality bar measured on one CPU holds on all (AVX2-only ones included) — among the
    kernels that quantise to the same levels (int8.LEVELS: the 7-bit avx2-u* kernels' vectors
    are their own, held to the bar above)."""
    pytest.importorskip("tokenizers")
    from seqenc.model import SentenceEncoder

    texts = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    model = SentenceEncoder.from_pretrained()
    vectors = {}
    for gemm in int8.runnable_gemms():
        model._encoders.pop(torch.int8, None)
        saved, int8.GEMM = int8.GEMM, gemm
        try:
            encoder = model.encoder_for("int8")
            expected = {int8.layer_gemm(n) for n in (".qkv", ".up", ".down")}
        finally:
            int8.GEMM = saved
        kernels_used = [m.gemm for m in encoder.modules() if isinstance(m, int8.Int8Linear)]
        assert set(kernels_used) == expected
        levels = tuple(int8.LEVELS[name] for name in kernels_used)
        vectors.setdefault(levels, []).append(model.encode(texts[:64], dtype="int8"))
    for same in vectors.values():
        for other in same[1:]:
            assert np.array_equal(same[0], other)


def test_encode_int8_is_refused_where_nothing_exact_and_fast_runs(monkeypatch, make_cfg):
    encoder = Encoder(make_cfg()).eval()
    monkeypatch.setattr(int8, "_VNNI", False)
    monkeypatch.setattr(int8, "GEMM", None)  # as with SEQENC_KERNELS=0 on an AVX2-only CPU
    with pytest.raises(ValueError, match="needs seqenc's C kernels .* or a CPU with VNNI"):
        int8.int8_encoder(encoder)


@pytest.mark.skipif("avx2" not in int8.runnable_gemms(), reason="our kernels do not run here")
def test_encode_int8_runs_without_vnni_on_our_avx2_kernel(monkeypatch, make_cfg):
    encoder = Encoder(make_cfg()).eval()
    monkeypatch.setattr(int8, "_VNNI", False)  # an AVX2-only CPU
    monkeypatch.setattr(int8, "GEMM", "avx2")
    quantized = int8.int8_encoder(encoder)
    layers = [m for m in quantized.modules() if isinstance(m, int8.Int8Linear)]
    assert layers and all(m.gemm == "avx2" for m in layers)


@pytest.mark.skipif(not int8.runnable_gemms(), reason="our int8 kernels do not run here")
def test_batch_threads_leave_no_buffers_behind():
    """encode runs its batches on worker threads (threads.run_batches, kept across calls); the
    int8 kernels' per-thread scratch buffers (~0.4 MB each) must not pile up call after call
    (a first version, with threads made per call, kept them: +50 MiB over 60 calls). Counted
    in C: the threads holding one now."""
    pytest.importorskip("tokenizers")
    from seqenc.model import SentenceEncoder

    texts = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    model = SentenceEncoder.from_pretrained()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.encode(texts[:64], dtype="int8")
        before = kernels._kernels.scratch_buffers()
        for _ in range(20):
            model.encode(texts[:64], dtype="int8")  # 2 batches on the 2 workers
        # at most this thread, the workers and tasks.c's helpers keep one
        assert kernels._kernels.scratch_buffers() <= max(before, 1) + 2
    finally:
        torch.set_num_threads(threads)
