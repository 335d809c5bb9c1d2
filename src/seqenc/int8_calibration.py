"""An int8 inference copy of an encoder: calibration (per-channel activation maxima for
SmoothQuant-style smoothing, on random tokens: no user data) and the swap of its nn.Linear
layers for seqenc.int8.Int8Linear, each on the kernel int8.layer_gemm gives it."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from . import int8


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
        gemm = (int8.layer_gemm(name) if int8.gemm_fits(module.out_features, module.in_features)
                else None)
        setattr(parent, child, int8.Int8Linear(module, s, gemm=gemm))
        done.append(name)
    return done


def int8_encoder(encoder: nn.Module, tokenizer=None) -> nn.Module:
    """An inference copy of ``encoder`` (float32, on the CPU) with every nn.Linear int8, the
    original left untouched: per-token activation scales everywhere, plus smoothing (alpha 0.5)
    of the layers that read a LayerNorm's outlier channels (qkv, FFN up), calibrated on
    CALIBRATION_SEQUENCES seeded random-token sequences in ``tokenizer``'s frame ([CLS] ...
    [SEP]): outlier channels belong to the model, not the text, so no user data is needed
    (random tokens and real text calibrate equally well: benchmarks/RESULTS.md). Without a
    tokenizer, no smoothing. Refused where int8 would not pay: off the CPU, and where neither
    our int8 GEMMs nor oneDNN's VNNI ones run (check_int8)."""
    device = next(encoder.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"dtype int8 runs on the CPU only (this model is on {device}); "
                         "use float32 or bfloat16 there")
    int8.check_int8()
    clone = copy.deepcopy(encoder).eval().float()
    stats = None if tokenizer is None else calibrate(clone, random_batches(tokenizer))
    quantize_encoder(clone, stats, alpha=0.5, smooth=lambda name: name.endswith(SMOOTHED))
    return clone


def encoder_gemms(encoder: nn.Module) -> tuple[str, ...]:
    """The int8 GEMMs ``encoder``'s Int8Linear layers run, sorted ("onednn": torch._int_mm):
    what a benchmark names, since the kernel is chosen at quantisation (int8.GEMM, layer_gemm),
    not by the mode that asked for it."""
    return tuple(sorted({m.gemm or "onednn" for m in encoder.modules()
                         if isinstance(m, int8.Int8Linear)}))


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
