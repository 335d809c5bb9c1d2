"""int8 linear layers for CPU inference that keep quality: int8 weights with one scale per
output channel, int8 activations with one scale per token (row), int32 accumulation
(``torch._int_mm``: oneDNN's VNNI kernels where the CPU has them), float32 out.

Why per token: all-MiniLM-L6-v2 has outlier channels and outlier tokens; one scale for a whole
batch (PyTorch's dynamic quantisation) lets one token flatten everyone else's values (mean cosine
to fp32 0.94-0.98, benchmarks/RESULTS.md). Optional SmoothQuant-style smoothing moves part of an
outlier channel's range from the activations into the weights: x W^T = (x / s)(W s)^T with
s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha) from calibration activations.

``quantize_encoder`` swaps the encoder's nn.Linear layers for Int8Linear in place; which layers
(``skip``) and alpha are the caller's choice, measured in benchmarks/int8_quality.py.
``int8_encoder`` is what ``encode(dtype="int8")`` runs: every linear layer, per-token scales,
smoothing calibrated on random tokens (no user data), which holds the quality bar
(benchmarks/RESULTS.md). Its layers keep the fused path (nn/kernels.py): int8 GEMM, then our
float32 epilogues.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K) float -> (N, K) int8 and (N,) float32 scales: x ~ q * scale[:, None]."""
    scale = x.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(x / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale.float()


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per row (token)."""

    def __init__(self, linear: nn.Linear, smooth: Tensor | None = None):
        super().__init__()
        w = linear.weight.detach().float()  # (M, K)
        if smooth is not None:
            w = w * smooth[None, :]
        w_scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (M,)
        q = torch.round(w / w_scale[:, None]).clamp_(-127, 127).to(torch.int8)
        self.register_buffer("weight_t", q.t().contiguous())  # (K, M): _int_mm's layout
        self.register_buffer("weight_scale", w_scale)
        self.register_buffer("inv_smooth", None if smooth is None else 1.0 / smooth)
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def matmul(self, x: Tensor) -> Tensor:
        """x W^T without the bias: (N, K) float -> (N, M) float32."""
        x = x.float().contiguous()
        fast = _fast_kernels() and x.shape[1] % 16 == 0 and self.out_features % 16 == 0
        if not fast:
            if self.inv_smooth is not None:
                x = x * self.inv_smooth
            q, scale = quantize_rows(x)
            acc = _int_mm(q, self.weight_t)  # (N, M) int32
            return acc.float().mul_(scale[:, None]).mul_(self.weight_scale)
        from .nn.kernels import _kernels

        N, K = x.shape
        threads = torch.get_num_threads()
        q, scale = torch.empty(N, K, dtype=torch.int8), torch.empty(N)
        smooth = self.inv_smooth  # applied by the kernel as it reads x: no smoothed copy
        _kernels.quantize_rows(x.data_ptr(), q.data_ptr(), scale.data_ptr(), N, K, threads,
                               0 if smooth is None else smooth.contiguous().data_ptr())
        acc = _int_mm(q, self.weight_t).contiguous()
        _kernels.dequantize_rows(acc.data_ptr(), scale.data_ptr(), self.weight_scale.data_ptr(),
                                 N, self.out_features, threads)
        return acc.view(torch.float32)  # converted in place

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = self.matmul(x.reshape(-1, shape[-1]))
        if self.bias is not None:
            y += self.bias
        return y.reshape(*shape[:-1], self.out_features)


def _fast_kernels() -> bool:
    """seqenc's AVX-512 (de)quantisation kernels run here (else PyTorch ops do the same)."""
    from .nn import kernels

    return kernels.ENABLED and kernels.ISA in ("avx512", "avx512bf16")


def _has_vnni() -> bool:
    """Whether oneDNN's int8 GEMM gets VNNI here. Without it (AVX2-only CPUs) oneDNN multiplies
    with vpmaddubsw, whose int16 pair sums saturate for large activations: results were off by
    far more than the quantisation error (seen with ONEDNN_MAX_CPU_ISA=AVX2)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in ("SSE41", "AVX", "AVX2", "AVX512_CORE"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return True  # not Linux: trust oneDNN
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


_VNNI = _has_vnni()


def check_vnni() -> None:
    """Refuse int8, in one line that says why, on CPUs without VNNI."""
    if not _VNNI:
        raise ValueError("dtype int8 needs a CPU with VNNI (avx512_vnni, avx_vnni or amx_int8) "
                         "and this one has none, or ONEDNN_MAX_CPU_ISA hides it: without it int8 "
                         "is slower than float32. Use float32 (or bfloat16)")


def _int_mm(a: Tensor, b: Tensor) -> Tensor:
    """int8 (N, K) @ (K, M) -> int32. torch._int_mm wants N > 16 on some builds: pad small N.
    Without VNNI the products are summed in float64 instead (exact)."""
    if not _VNNI:
        return (a.double() @ b.double()).to(torch.int32)
    n = a.shape[0]
    if n > 16:
        return torch._int_mm(a, b)
    padded = torch.zeros(17, a.shape[1], dtype=torch.int8)
    padded[:n] = a
    return torch._int_mm(padded, b)[:n]


def calibrate(encoder: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Per input channel max |x| of every nn.Linear of ``encoder`` over calibration batches
    (input_ids, keep_mask). Runs the modules (not the fused kernels, which skip their forward)."""
    from .nn import kernels

    stats: dict[str, Tensor] = {}
    hooks = []

    def hook(name: str) -> Callable:
        def record(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0).float()
            stats[name] = torch.maximum(stats[name], x) if name in stats else x
        return record

    for name, module in encoder.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(hook(name)))
    enabled, kernels.ENABLED = kernels.ENABLED, False
    try:
        with torch.inference_mode():
            for ids, keep in batches:
                encoder(ids, keep)
    finally:
        kernels.ENABLED = enabled
        for h in hooks:
            h.remove()
    return stats


def quantize_encoder(encoder: nn.Module, stats: dict[str, Tensor] | None = None,
                     alpha: float = 0.5, skip: Callable[[str], bool] = lambda name: False,
                     smooth: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Replace the encoder's nn.Linear layers (but those ``skip`` names) by Int8Linear, in
    place; smoothing (needs ``stats`` from ``calibrate``) where ``smooth(name)``. Returns the
    names quantised."""
    done = []
    for name, module in list(encoder.named_modules()):
        if not isinstance(module, nn.Linear) or skip(name):
            continue
        s = None
        if stats is not None and smooth(name) and alpha > 0:
            w_max = module.weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
            s = (stats[name].clamp(min=1e-5) ** alpha / w_max ** (1 - alpha)).clamp(min=1e-5)
        parent_name, _, child = name.rpartition(".")
        parent = encoder.get_submodule(parent_name) if parent_name else encoder
        setattr(parent, child, Int8Linear(module, s))
        done.append(name)
    return done


def int8_encoder(encoder: nn.Module, tokenizer=None) -> nn.Module:
    """An inference copy of ``encoder`` (float32, on the CPU) with every nn.Linear int8, the
    original left untouched: per-token activation scales everywhere, plus smoothing (alpha 0.5)
    of the layers that read a LayerNorm's outlier channels (qkv, FFN up), calibrated on
    CALIBRATION_SEQUENCES seeded random-token sequences in ``tokenizer``'s frame ([CLS] ...
    [SEP]): outlier channels belong to the model, not the text, so no user data is needed
    (random tokens and real text calibrate equally well: benchmarks/RESULTS.md). Without a
    tokenizer, no smoothing. Refused where int8 would not pay: off the CPU, and on CPUs without
    VNNI (there the int8 products are summed in float64: exact, slower than float32)."""
    device = next(encoder.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"dtype int8 runs on the CPU only (this model is on {device}); "
                         "use float32 or bfloat16 there")
    check_vnni()
    clone = copy.deepcopy(encoder).eval().float()
    stats = None if tokenizer is None else calibrate(clone, random_batches(tokenizer))
    quantize_encoder(clone, stats, alpha=0.5, smooth=lambda name: name.endswith(SMOOTHED))
    return clone


CALIBRATION_SEQUENCES = 32
SMOOTHED = ("qkv", ".up")  # linears right after a LayerNorm (BERT-style post-norm layers)


def random_batches(tokenizer, n: int = CALIBRATION_SEQUENCES, longest: int = 64,
                   seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """n random-token sequences of 1..longest tokens inside the tokenizer's special tokens,
    as padded (input_ids, keep) batches of 32: calibration without user data."""
    frame = tokenizer.encode([""]).ids[0]  # e.g. [CLS] [SEP]
    vocab = tokenizer.vocab_size
    low = min(1000, vocab // 4)  # BERT vocabularies start with special and unused entries
    g = torch.Generator().manual_seed(seed)
    ids = []
    for _ in range(n):
        length = int(torch.randint(1, longest, (1,), generator=g))
        ids.append(frame[:1] + torch.randint(low, vocab, (length,), generator=g).tolist()
                   + frame[1:])
    batches = []
    for lo in range(0, n, 32):
        batch = tokenizer.pad(ids[lo:lo + 32])
        batches.append((batch.input_ids, batch.attention_mask))
    return batches
