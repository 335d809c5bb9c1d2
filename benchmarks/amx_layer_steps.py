"""Per-GEMM times of one fused MiniLM post-norm layer, int8 (amx) and bf16 (amx), 1 thread.

Each step (with its epilogue: qkv dequantised; out + add + LayerNorm; up + GELU (+ requant
for int8); down + add + LayerNorm) timed by the thread's CPU clock (time.thread_time: a
descheduled thread's wait is not counted, so it holds up on a shared CPU), medians of
``--reps`` calls, N packed rows of sequences of 37 tokens. For A/B of two builds, run it
alternately from each tree (PYTHONPATH=<tree>/src) and compare medians.

    python benchmarks/amx_layer_steps.py --rows 1184 64 --reps 30 [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc import int8, int8_layer
from seqenc.allocator import tune_memory
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.precision import bf16_encoder
from seqenc.threads import set_threads

import torch
from harness import interleaved

SHAPES = {"qkv": (1152, 384), "out+LN": (384, 384), "up+GELU": (1536, 384),
          "down+LN": (384, 1536)}  # (M, K) of each step's GEMM


def first_layers(model: SentenceEncoder, dtypes: list[str]) -> dict:
    """dtype ("int8", "bf16") -> the weights of the first layer of the model's copy in it."""
    copies = {"int8": lambda: int8.int8_encoder(model.encoder, model.tokenizer),
              "bf16": lambda: bf16_encoder(model.encoder)}
    return {dtype: copy().layers[0].post_norm_weights() for dtype, copy in copies.items()
            if dtype in dtypes}


def steps(w, n: int, dtype: str) -> dict:
    torch.manual_seed(0)
    x, eps = torch.randn(n, 384), 1e-12
    seq = 37
    lengths = torch.full((n // seq,), seq, dtype=torch.long)
    lengths[-1] += n - seq * (n // seq)
    starts = torch.cumsum(lengths, 0) - lengths
    ctx = torch.randn(n, 384)
    if dtype == "int8":
        a = w.out_weight._own_gemm(ctx, norm=(w.out_bias, x, w.norm1_weight, w.norm1_bias, eps))
        h = w.up_weight._own_gemm(a, gelu_bias=w.up_bias, feeds=w.down_weight)
        return {
            "qkv": lambda: w.qkv_weight.matmul(x),
            "out+LN": lambda: w.out_weight._own_gemm(
                ctx, norm=(w.out_bias, x, w.norm1_weight, w.norm1_bias, eps)),
            "up+GELU": lambda: w.up_weight._own_gemm(a, gelu_bias=w.up_bias,
                                                     feeds=w.down_weight),
            "down+LN": lambda: w.down_weight._own_gemm(
                h, norm=(w.down_bias, a, w.norm2_weight, w.norm2_bias, eps)),
            "layer": lambda: int8_layer.post_norm_layer(x, starts, lengths, 12, eps, w),
        }
    a16 = torch.empty(x.shape, dtype=torch.bfloat16)
    ctx16 = ctx.to(torch.bfloat16)
    a = kernels.add_layer_norm_(kernels.matmul(ctx16, w.out_weight), w.out_bias, x,
                                w.norm1_weight, w.norm1_bias, eps, copy_bf16=a16)
    h = w.up_weight.matmul_gelu(a16, w.up_bias)
    return {
        "qkv": lambda: kernels.matmul(x, w.qkv_weight),
        "out+LN": lambda: kernels.add_layer_norm_(
            kernels.matmul(ctx16, w.out_weight), w.out_bias, x, w.norm1_weight, w.norm1_bias,
            eps, copy_bf16=a16),
        "up+GELU": lambda: w.up_weight.matmul_gelu(a16, w.up_bias),
        "down+LN": lambda: kernels.add_layer_norm_(
            kernels.matmul(h, w.down_weight), w.down_bias, a, w.norm2_weight, w.norm2_bias,
            eps),
        "layer": lambda: kernels.fused_post_norm_layer(x, starts, lengths, 12, eps, w),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1184, 64])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--dtypes", nargs="+", default=["int8", "bf16"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    set_threads(1)
    tune_memory()
    model = SentenceEncoder.from_pretrained()
    layers = first_layers(model, args.dtypes)
    result = {}
    for n in args.rows:
        for dtype, w in layers.items():
            for name, f in steps(w, n, dtype).items():
                ts = interleaved({name: f}, args.reps, warm_up=3, clock=time.thread_time
                                 ).seconds[name]
                ms = statistics.median(ts) * 1e3
                m, k = SHAPES.get(name, (0, 0))
                gops = 2 * n * m * k / ms / 1e6 if m else None
                result[f"{dtype} {name} N={n}"] = {"ms": ms, "min_ms": min(ts) * 1e3,
                                                   "gop_s": gops}
                print(f"{dtype:5s} N={n:5d} {name:8s} {ms:7.3f} ms (min {min(ts) * 1e3:7.3f})"
                      + (f" {gops:6.0f} GOP/s" if gops else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
