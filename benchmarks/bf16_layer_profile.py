"""Where a bf16 encode's layer spends its time, step by step, on the avx512bf16 kernel set
(AVX512-BF16's vdpbf16ps GEMM: what a Zen 4-class CPU runs) and on amx, in one process.

One MiniLM post-norm layer of ``encode(dtype="bfloat16")`` (precision.bf16_encoder's layer 0),
1 thread (encode runs its batches side by side, one thread each), on packed batches cut from
the bench corpus the way encode cuts them (sorted by length, 32 rows a pass): the pass at each
of ``--percentiles``. Steps, in the order kernels.fused_post_norm_layer runs them:
    to_bf16      the qkv GEMM's float32 input rounded to bf16 (its own pass)
    qkv          the qkv GEMM on those bf16 rows (float32 out)
    attention    varlen_attention: float32 qkv + bias in, bf16 rows out
    out, LN1     the out GEMM, then add + LayerNorm (+ its bf16 copy for the up GEMM)
    out+LN1      both as the layer runs them: LN1 in the GEMM's epilogue where the build has it
                 (gemm_bf16.can_norm), else the two above
    up+GELU      the up GEMM with bias + GELU in its epilogue (bf16 out)
    up alone     the same GEMM with no epilogue (float32 out): up+GELU minus this is the GELU
    down, LN2    the down GEMM, then add + LayerNorm
    down+LN2     both as the layer runs them (as out+LN1)
    layer        the whole fused layer (kernels.fused_post_norm_layer)
Times are the thread's CPU clock (time.thread_time: a descheduled thread's wait is not
counted, so figures hold up on a shared CPU), medians of ``--rounds`` rounds, each round every
(kernel set, step) once, interleaved.

    SEQENC_ISA unset, on an AMX CPU:  python benchmarks/bf16_layer_profile.py [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc.allocator import tune_memory
from seqenc.model import SentenceEncoder
from seqenc.nn import gemm_bf16, kernels
from seqenc.precision import bf16_encoder
from seqenc.threads import set_threads

import torch
from harness import interleaved, read_texts


def passes(model: SentenceEncoder, percentiles: list[int]) -> dict[str, list[int]]:
    lengths = sorted(len(ids) for ids in model.tokenizer.encode(read_texts(2000)).ids)
    cut = [lengths[i:i + 32] for i in range(0, len(lengths), 32)]
    return {f"p{p}": cut[min(len(cut) - 1, p * len(cut) // 100)] for p in percentiles}


def steps(layer, lengths: list[int], isa: str) -> dict:
    w = layer.post_norm_weights()
    torch.manual_seed(0)
    n, d = sum(lengths), w.norm1_weight.shape[0]
    lens = torch.tensor(lengths, dtype=torch.long)
    starts = torch.cumsum(lens, 0) - lens
    x, x16 = torch.randn(n, d), torch.empty(n, d, dtype=torch.bfloat16)
    qkv = gemm_bf16.gemm(x, w.qkv_weight.packed, 3 * d, isa=isa)
    ctx16 = kernels.varlen_attention(qkv, starts, lens, 12, w.qkv_bias, torch.bfloat16)
    a16 = torch.empty(n, d, dtype=torch.bfloat16)
    a = kernels.add_layer_norm_(gemm_bf16.gemm(ctx16, w.out_weight.packed, d, isa=isa),
                                w.out_bias, x, w.norm1_weight, w.norm1_bias, 1e-12,
                                copy_bf16=a16)
    up_m = w.up_weight.out_features
    h16 = gemm_bf16.gemm(a16, w.up_weight.packed, up_m, gelu_bias=w.up_bias, isa=isa)
    o = gemm_bf16.gemm(ctx16, w.out_weight.packed, d, isa=isa)
    down = gemm_bf16.gemm(h16, w.down_weight.packed, d, isa=isa)

    def gemm_norm(a_in, linear, norm, copy=None):  # as gemm_bf16.post_norm_layer runs it
        if gemm_bf16.can_norm():
            return gemm_bf16.gemm(a_in, linear.packed, d, isa=isa, norm=norm, copy_bf16=copy)
        return kernels.add_layer_norm_(gemm_bf16.gemm(a_in, linear.packed, d, isa=isa), *norm,
                                       copy_bf16=copy)

    norm1 = (w.out_bias, x, w.norm1_weight, w.norm1_bias, 1e-12)
    norm2 = (w.down_bias, a, w.norm2_weight, w.norm2_bias, 1e-12)

    def layer_under(isa_: str):  # the fused layer with kernels.ISA (gemm's default) set to isa_
        saved, kernels.ISA = kernels.ISA, isa_
        try:
            return kernels.fused_post_norm_layer(x, starts, lens, 12, 1e-12, w)
        finally:
            kernels.ISA = saved

    return {
        "to_bf16": lambda: kernels._kernels.to_bf16(x.data_ptr(), x16.data_ptr(), n, d, 1),
        "qkv": lambda: gemm_bf16.gemm(x16, w.qkv_weight.packed, 3 * d, isa=isa),
        "attention": lambda: kernels.varlen_attention(qkv, starts, lens, 12, w.qkv_bias,
                                                      torch.bfloat16),
        "out": lambda: gemm_bf16.gemm(ctx16, w.out_weight.packed, d, isa=isa),
        "LN1": lambda: kernels.add_layer_norm_(o.clone(), w.out_bias, x, w.norm1_weight,
                                               w.norm1_bias, 1e-12, copy_bf16=a16),
        "up+GELU": lambda: gemm_bf16.gemm(a16, w.up_weight.packed, up_m, gelu_bias=w.up_bias,
                                          isa=isa),
        "up alone": lambda: gemm_bf16.gemm(a16, w.up_weight.packed, up_m, isa=isa),
        "down": lambda: gemm_bf16.gemm(h16, w.down_weight.packed, d, isa=isa),
        "LN2": lambda: kernels.add_layer_norm_(down.clone(), w.down_bias, a, w.norm2_weight,
                                               w.norm2_bias, 1e-12),
        "clone (in LN1, LN2)": lambda: down.clone(),
        "out+LN1": lambda: gemm_norm(ctx16, w.out_weight, norm1, a16),
        "down+LN2": lambda: gemm_norm(h16, w.down_weight, norm2),
        "layer": lambda: layer_under(isa),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--percentiles", type=int, nargs="+", default=[50, 90])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--isas", nargs="+", default=[i for i in ("avx512bf16", "amx")
                                                       if i in kernels.AVAILABLE])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    set_threads(1)
    tune_memory()
    model = SentenceEncoder.from_pretrained()
    layer = bf16_encoder(model.encoder).layers[0]
    arms = {(name, isa, key): f for name, lengths in passes(model, args.percentiles).items()
            for isa in args.isas for key, f in steps(layer, lengths, isa).items()}
    times = interleaved(arms, args.rounds, clock=time.thread_time).seconds
    result = {}
    for (name, isa, key), ts in times.items():
        ms = statistics.median(ts) * 1e3
        layer_ms = statistics.median(times[(name, isa, "layer")]) * 1e3
        result[f"{name} {isa} {key}"] = {"ms": ms, "min_ms": min(ts) * 1e3,
                                         "of_layer": ms / layer_ms}
        print(f"{name} {isa:10s} {key:20s} {ms:8.3f} ms  {100 * ms / layer_ms:5.1f}% of layer",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
