"""The attention kernel alone (kernels.varlen_attention), one thread, A/B against another build's
C kernels, interleaved rounds in one process (medians): MiniLM's 12 heads of 32 on packed
batches shaped like encode's. Batches: the bench corpus tokenized, sorted by length and cut
into passes of 32 (what encode does), a few of them by percentile plus the whole corpus, and
two synthetic ones (32 x 37: the lead's layer profile; 32 random lengths 8..64 unsorted).
Arms: each build, each of (float32 in, float32 out) (fp32 and int8 encodes), (float32 in, bf16
out) (bf16 encode), (bf16 in, bf16 out) (an encoder cast to bf16). Also checks that both builds
agree (max |difference| printed: both are held to the same float64 bound by the tests).

    python benchmarks/attention_ab.py --baseline-so OLD.so [--rounds 7] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seqenc.nn import kernels
from seqenc.threads import set_threads

import torch
from harness import interleaved, load_kernels, read_texts

HEADS, HD = 12, 32
D = HEADS * HD


def corpus_lengths() -> list[int]:
    from seqenc.model import SentenceEncoder

    tok = SentenceEncoder.from_pretrained().tokenizer
    return sorted(len(ids) for ids in tok.encode(read_texts(2000)).ids)  # bench's --texts 2000


def batches(lengths: list[int]) -> dict[str, list[list[int]]]:
    passes = [lengths[i:i + 32] for i in range(0, len(lengths), 32)]
    gen = torch.Generator().manual_seed(0)
    out = {"32x37": [[37] * 32], "cached 4x37 (8 times)": [[37] * 4],
           "mixed 8..64": [torch.randint(8, 65, (32,), generator=gen).tolist()]}
    for pct in (10, 50, 90):
        b = passes[min(len(passes) - 1, len(passes) * pct // 100)]
        out[f"p{pct} pass (mean {sum(b) / len(b):.0f})"] = [b]
    out[f"corpus ({len(lengths)} texts, {len(passes)} passes)"] = passes
    return out


def call(built, qkv, bias, starts, lengths, out_bf16):
    out = torch.empty(qkv.shape[0], D, dtype=torch.bfloat16 if out_bf16 else torch.float32)
    q_bias, v_bias = bias[:D].contiguous(), bias[2 * D:].contiguous()
    built.attention(qkv.data_ptr(), q_bias.data_ptr(), v_bias.data_ptr(), out.data_ptr(),
                    starts.data_ptr(), lengths.data_ptr(), len(lengths), qkv.shape[0], HEADS,
                    HD, 1.0 / HD ** 0.5, 1, qkv.dtype == torch.bfloat16, out_bf16,
                    kernels.ISAS.index(kernels.ISA))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-so", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=SO",
                    help="another build to time beside them")
    ap.add_argument("--only", default="", help="run the batches whose name has this")
    ap.add_argument("--modes", default="f32>f32,f32>bf16,bf16>bf16")
    args = ap.parse_args()
    set_threads(1)
    builds = {"old": load_kernels(args.baseline_so), "new": kernels._kernels}
    for v in args.variant:
        name, so = v.split("=", 1)
        builds[name] = load_kernels(Path(so))
    torch.manual_seed(0)
    results = {}
    for name, group in batches(corpus_lengths()).items():
        if args.only not in name:
            continue
        problems = []
        if name.startswith("cached"):  # one small batch 8 times: its rows stay in L2
            group = group[:1]
        for ls in group:
            lengths = torch.tensor(ls, dtype=torch.long)
            starts = lengths.cumsum(0) - lengths
            n = int(lengths.sum())
            qkv = torch.randn(n, 3 * D) * 2  # MiniLM's projections: scores of a few units
            problems.append((qkv, torch.randn(3 * D), starts, lengths))
        if name.startswith("cached"):
            problems *= 8
        for mode, (in16, out16) in {"f32>f32": (False, False), "f32>bf16": (False, True),
                                    "bf16>bf16": (True, True)}.items():
            if mode not in args.modes.split(","):
                continue
            probs = [(q.bfloat16() if in16 else q, b, s, ln) for q, b, s, ln in problems]
            diff = max((call(builds["old"], *p, out16).float()
                        - call(builds["new"], *p, out16).float()).abs().max().item()
                        for p in probs)
            def run(built, probs=probs, out16=out16) -> None:
                for p in probs:
                    call(built, *p, out16)

            times = interleaved({k: lambda built=built: run(built) for k, built in builds.items()},
                                args.rounds, warm_up=0, clock=time.thread_time)
            med = {k: times.median(k) * 1e3 for k in builds}
            results[f"{name} {mode}"] = {"ms": med, "old/new": med["old"] / med["new"],
                                         "max_abs_diff": diff}
            others = "".join(f"  {k} {v:.3f}" for k, v in list(med.items())[2:])
            print(f"{name:34s} {mode:9s} old {med['old']:8.3f} ms  new {med['new']:8.3f} ms  "
                  f"x{med['old'] / med['new']:.2f}  diff {diff:.2g}{others}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
