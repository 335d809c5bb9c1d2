"""add + LayerNorm (kernels.add_layer_norm_, avx512.c) and the fused layers around it, A/B
against another build's C kernels, one thread, interleaved rounds in one process (medians of
the thread's CPU clock). Checks first that both builds give the same bits (LayerNorm alone, row
counts 1..9 and encode-sized batches, with and without the bf16 copy; the bf16 layer on the
avx512bf16 and amx sets; the float32 layer, whose gemm_f32 runs the same LayerNorm inside).

    python benchmarks/layernorm_ab.py --baseline-so OLD.so [--rounds 15] [--json F]
    python benchmarks/layernorm_ab.py --baseline-so OLD.so --encode 1000 --threads 2 [--dtype D]

--encode N: instead, encode(dtype) of the bench corpus's first N texts (its own batch threads),
the builds alternating, outputs checked equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc.allocator import tune_memory
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.precision import bf16_encoder
from seqenc.threads import set_threads

import numpy as np
import torch
from harness import interleaved, load_kernels, read_texts

D = 384


def install(build) -> None:
    """Run the kernels of ``build`` (a _kernels module) from now on."""
    kernels._kernels = build


def cases(model: SentenceEncoder) -> dict:
    """name -> f() returning its output tensors; run under whichever build is installed."""
    torch.manual_seed(0)
    g, b, beta = torch.randn(D), torch.randn(D), torch.randn(D)
    out = {}
    for n in (1, 2, 3, 4, 5, 7, 9, 724, 2048):
        y, r = torch.randn(n, D) * 3, torch.randn(n, D)

        def ln(y=y, r=r, n=n, copy=True):
            c16 = torch.empty(n, D, dtype=torch.bfloat16) if copy else None
            z = kernels.add_layer_norm_(y.clone(), b, r, g, beta, 1e-12, copy_bf16=c16)
            return (z, c16) if copy else (z,)
        out[f"LN N={n}"] = ln
        out[f"LN N={n} no copy"] = lambda ln=ln: ln(copy=False)
    lengths = torch.tensor([20] * 20 + [25] * 12, dtype=torch.long)  # a p50-like pass, 724 rows
    starts = torch.cumsum(lengths, 0) - lengths
    x = torch.randn(int(lengths.sum()), D)
    w16 = bf16_encoder(model.encoder).layers[0].post_norm_weights()
    w32 = model.encoder.layers[0].post_norm_weights()
    for isa in [i for i in ("avx512bf16", "amx") if i in kernels.AVAILABLE]:
        def layer(isa=isa):
            saved, kernels.ISA = kernels.ISA, isa  # the GEMMs' kernel set (gemm's default)
            try:
                return (kernels.fused_post_norm_layer(x, starts, lengths, 12, 1e-12, w16),)
            finally:
                kernels.ISA = saved
        out[f"bf16 layer {isa}"] = layer
    out["fp32 layer"] = lambda: (kernels.fused_post_norm_layer(x, starts, lengths, 12, 1e-12,
                                                               w32),)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-so", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--encode", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    set_threads(args.threads)
    tune_memory()
    builds = {"baseline": load_kernels(args.baseline_so), "this": kernels._kernels}
    if args.encode:
        return encode_ab(builds, args)
    runs = cases(SentenceEncoder.from_pretrained())
    for name, f in runs.items():
        got = {}
        for build, k in builds.items():
            kernels._kernels = k
            got[build] = f()
        same = all(torch.equal(a, b) for a, b in zip(got["baseline"], got["this"], strict=True))
        assert same, f"{name}: the builds' bits differ"
    print(f"same bits in all {len(runs)} cases", flush=True)
    timed = {n: (lambda: None, runs[n]) for n in runs if "layer" in n}
    torch.manual_seed(1)
    for n in (724, 2048):  # the kernel alone: its input restored outside the clock
        y0, y, r, c16 = torch.randn(n, D) * 3, torch.empty(n, D), torch.randn(n, D), \
            torch.empty(n, D, dtype=torch.bfloat16)
        g, b = torch.randn(D), torch.randn(D)
        timed[f"LN N={n}"] = (lambda y=y, y0=y0: y.copy_(y0), lambda y=y, r=r, c16=c16, g=g, b=b:
                              kernels.add_layer_norm_(y, b, r, g, b, 1e-12, copy_bf16=c16))
    def setup(key: tuple[str, str]) -> None:
        n, build = key
        install(builds[build])
        timed[n][0]()

    times = interleaved({(n, b): run for n, (_, run) in timed.items() for b in builds},
                        args.rounds, warm_up=0, clock=time.thread_time, setup=setup).seconds
    kernels._kernels = builds["this"]
    result = {}
    for n in timed:
        old, new = (statistics.median(times[(n, b)]) * 1e3 for b in builds)
        pairs = statistics.median(o / t for o, t in zip(times[(n, "baseline")],
                                                        times[(n, "this")], strict=True))
        result[n] = {"baseline_ms": old, "this_ms": new, "speedup": old / new,
                     "pairwise_median": pairs}
        print(f"{n:22s} baseline {old:8.3f} ms  this {new:8.3f} ms  {old / new:5.3f}x "
              f"(pairwise median {pairs:5.3f}x)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def encode_ab(builds: dict, args) -> None:
    texts = read_texts(args.encode)
    model = SentenceEncoder.from_pretrained()
    timings = interleaved(dict.fromkeys(builds, lambda: model.encode(texts, dtype=args.dtype)),
                          args.rounds, setup=lambda build: install(builds[build]))
    outputs, times = timings.outputs, timings.seconds
    assert np.array_equal(outputs["baseline"], outputs["this"]), "the builds' outputs differ"
    kernels._kernels = builds["this"]
    rates = {b: len(texts) / statistics.median(ts) for b, ts in times.items()}
    pairs = statistics.median(o / t for o, t in zip(times["baseline"], times["this"],
                                                     strict=True))
    print(f"encode {args.dtype} {len(texts)} texts, {args.threads} threads, set {kernels.ISA}: "
          f"baseline {rates['baseline']:.1f} sent/s, this {rates['this']:.1f} sent/s, "
          f"{rates['this'] / rates['baseline']:.3f}x (pairwise median {pairs:.3f}x)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"sent_per_s": rates, "pairwise_median": pairs,
                                         "seconds": times}, indent=1))


if __name__ == "__main__":
    main()
