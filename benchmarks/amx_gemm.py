"""GFLOP/s of the bf16 GEMMs on MiniLM's shapes: ours on AMX (csrc/gemm_bf16_amx.c), ours on
AVX512-BF16 (csrc/gemm_bf16.c) and PyTorch's bf16 matmul (oneDNN: AMX where the CPU has it,
bf16 out), interleaved rounds in one process, medians; then, with --encode, encode(dtype=
"bfloat16") sentences/s with our GEMM on each kernel set (kernels.ISA switched between rounds:
only gemm_bf16.gemm reads the difference), cosine to fp32.

    python benchmarks/amx_gemm.py --rows 1185 --rounds 7 --threads 1,2 [--encode 2000]
                                  [--json F]

Ours take float32 rows (converted to bf16 inside, as Bf16Linear's first GEMM does) unless
--bf16-rows; PyTorch's take bf16 rows. The up projection runs with the GELU epilogue (bf16
out) for ours, without for PyTorch's (its GELU would be a second pass)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc.nn import gemm_bf16, kernels
from seqenc.threads import set_threads

import torch
from harness import read_texts

SHAPES = {"qkv": (384, 1152), "out": (384, 384), "up+gelu": (384, 1536), "down": (1536, 384)}


def seconds(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def gemms(rows: int, rounds: int, bf16_rows: bool) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    result: dict[str, dict[str, float]] = {}
    for name, (k, m) in SHAPES.items():
        x, w, b = torch.randn(rows, k), torch.randn(m, k) * 0.05, torch.randn(m)
        xin = x.bfloat16() if bf16_rows else x
        packed, x16, w16 = gemm_bf16.pack_weight(w), x.bfloat16(), w.bfloat16()
        gelu = b if name == "up+gelu" else None
        def ours(isa: str, xin=xin, packed=packed, m=m, gelu=gelu) -> torch.Tensor:
            return gemm_bf16.gemm(xin, packed, m, gelu_bias=gelu, isa=isa)

        runs = {"amx": lambda: ours("amx"), "avx512bf16": lambda: ours("avx512bf16"),
                "torch": lambda x16=x16, w16=w16: torch.mm(x16, w16.t())}
        flop = 2.0 * rows * k * m
        repeat = max(3, int(2e9 / flop))  # ~2 GFLOP a round
        times: dict[str, list[float]] = {r: [] for r in runs}
        for _ in range(rounds):
            for r, fn in runs.items():
                times[r].append(seconds(fn, repeat))
        result[name] = {r: flop / statistics.median(t) / 1e9 for r, t in times.items()}
    return result


def encode(texts: list[str], rounds: int) -> dict[str, float]:
    from seqenc.model import SentenceEncoder

    model = SentenceEncoder.from_pretrained()
    ref = torch.as_tensor(model.encode(texts[:200], batch_size=32))
    speeds: dict[str, list[float]] = {"amx": [], "avx512bf16": []}
    cosines = {}
    best = kernels.ISA
    try:
        for _ in range(rounds):
            for isa in speeds:
                kernels.ISA = isa
                start = time.perf_counter()
                out = model.encode(texts, batch_size=32, dtype="bfloat16")
                speeds[isa].append(len(texts) / (time.perf_counter() - start))
                got = torch.as_tensor(out[:200])
                cosines[isa] = torch.nn.functional.cosine_similarity(got, ref).min().item()
    finally:
        kernels.ISA = best
    return {**{f"{i} sent/s": statistics.median(s) for i, s in speeds.items()},
            **{f"{i} min cosine": c for i, c in cosines.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1185)  # 32 sentences x ~37 tokens
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--bf16-rows", action="store_true")
    parser.add_argument("--encode", type=int, default=0, help="texts to encode (0: skip)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if "amx" not in kernels.AVAILABLE:
        raise SystemExit(f"no amx kernel set here: {kernels.describe()}")
    report: dict[str, object] = {"load": open("/proc/loadavg").read().split()[:3]}
    for threads in map(int, args.threads.split(",")):
        set_threads(threads)
        table = gemms(args.rows, args.rounds, args.bf16_rows)
        report[f"gemm GFLOP/s, {threads} threads"] = table
        print(f"{threads} thread(s), N = {args.rows}, GFLOP/s (median of {args.rounds}):")
        for name, row in table.items():
            print(f"  {name:8s} " + "  ".join(f"{r} {v:7.1f}" for r, v in row.items())
                  + f"  amx/avx512bf16 {row['amx'] / row['avx512bf16']:.2f}x")
        if args.encode:
            enc = encode(read_texts(args.encode), max(1, args.rounds // 2))
            report[f"encode, {threads} threads"] = enc
            print("  encode: " + ", ".join(f"{k} {v:.6g}" for k, v in enc.items()))
    report["load after"] = open("/proc/loadavg").read().split()[:3]
    print("load", report["load"], "->", report["load after"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
