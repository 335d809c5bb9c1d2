"""CPU time (user + sys) of encode() per mode on one corpus, interleaved rounds: a proxy for
speed that holds on a shared machine, where wall time does not (a niced job's wall time says
nothing). Modes: fp32, bf16, and int8 with each int8 GEMM that runs here (ours, by name, and
"onednn": torch._int_mm with the AVX-512 (de)quantisation kernels).

    python benchmarks/int8_cputime.py --texts 1000 --rounds 3 --threads 1 [--json out.json]

Run it as `SEQENC_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ...` for the AVX2-only proxy (fp32 on MKL,
int8 on the vpmaddwd kernel). With --threads 2 the CPU time includes the threads' spin waits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

import numpy as np
import torch

from seqenc import int8
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.threads import set_threads

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.txt"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(CORPUS))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gemms", default="", help="int8 GEMMs, comma-separated (default all)")
    parser.add_argument("--json")
    args = parser.parse_args()
    set_threads(args.threads)
    texts = [t for t in Path(args.corpus).read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:args.texts]
    model = SentenceEncoder.from_pretrained()
    modes: dict[str, tuple[str, torch.nn.Module | None]] = {"fp32": ("float32", None)}
    if kernels.supports_bf16():
        modes["bf16"] = ("bfloat16", None)
    gemms = args.gemms.split(",") if args.gemms else [*int8.runnable_gemms(), "onednn"]
    for gemm in gemms:
        if gemm == "onednn" and not int8._VNNI:
            continue
        saved, int8.GEMM = int8.GEMM, None if gemm == "onednn" else gemm
        try:
            modes[f"int8 {gemm}"] = ("int8", int8.int8_encoder(model.encoder, model.tokenizer))
        finally:
            int8.GEMM = saved
    reference = model.encode(texts)
    times: dict[str, list[float]] = {name: [] for name in modes}
    cosine: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (dtype, encoder) in modes.items():
            if encoder is not None:
                model._encoders[torch.int8] = encoder
            start = cpu_seconds()
            vectors = model.encode(texts, dtype=dtype)
            times[name].append(cpu_seconds() - start)
            cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(
                reference, axis=1)
            cosine[name] = float(cos.mean())
    base = "bf16" if "bf16" in modes else "fp32"
    best = {name: min(t) for name, t in times.items()}
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, {kernels.describe()}, "
          f"load average {os.getloadavg()}, {args.threads} thread(s), {len(texts)} texts",
          file=sys.stderr)
    for name in modes:
        print(f"{name:14s} CPU s (best of {args.rounds}) {best[name]:7.2f}   "
              f"{base}/this {best[base] / best[name]:5.2f}x   mean cosine to fp32 "
              f"{cosine[name]:.5f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "cosine": cosine,
                                               "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
