"""encode(dtype="int8") on the amx GEMM against vnni512 and against seqenc bf16, A/B in one
process (interleaved rounds, medians): texts/s, CPU seconds, cosine to fp32, and whether amx's
vectors are vnni512's (both sum exactly: they must be). Wall time: run it in a quiet slot.

    python benchmarks/int8_amx_encode.py --texts 2000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

from seqenc import int8
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.precision import made_from
from seqenc.threads import set_threads

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.txt"
MODES = {"int8 amx": "amx", "int8 vnni512": "vnni512", "bf16": None}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    set_threads(args.threads)
    texts = [t for t in CORPUS.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:args.texts]
    model = SentenceEncoder.from_pretrained()
    encoders = {}
    for name, gemm in MODES.items():
        if gemm is not None:
            saved, int8.GEMM = int8.GEMM, gemm
            try:  # recorded as made from the model's weights, or encode would make its own
                encoders[name] = made_from(int8.int8_encoder(model.encoder, model.tokenizer),
                                           model.encoder)
            finally:
                int8.GEMM = saved

    def run(name: str) -> np.ndarray:
        if MODES[name] is None:
            return model.encode(texts, dtype="bfloat16")
        model._encoders[torch.int8] = encoders[name]
        return model.encode(texts, dtype="int8")

    reference = model.encode(texts)
    outputs = {name: run(name) for name in MODES}  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in MODES}
    cpus: dict[str, list[float]] = {name: [] for name in MODES}
    for _ in range(args.rounds):
        for name in MODES:
            cpu, start = cpu_seconds(), time.perf_counter()
            run(name)
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(cpu_seconds() - cpu)
    same = bool(np.array_equal(outputs["int8 amx"], outputs["int8 vnni512"]))
    print(f"{kernels.describe()}, {args.threads} thread(s), {len(texts)} texts, medians of "
          f"{args.rounds} interleaved rounds, load {os.getloadavg()}; amx's vectors are "
          f"vnni512's: {same}")
    result = {}
    for name in MODES:
        median = statistics.median(walls[name])
        a, b = outputs[name], reference
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        result[name] = {"seconds": walls[name], "cpu_seconds": cpus[name],
                        "texts_per_s": len(texts) / median, "min_cosine": float(cos.min()),
                        "mean_cosine": float(cos.mean())}
        print(f"{name:14s} {len(texts) / median:7.1f} texts/s  CPU "
              f"{statistics.median(cpus[name]):6.2f} s  cosine to fp32 min {cos.min():.6f} "
              f"mean {cos.mean():.6f}")
    speed = {name: r["texts_per_s"] for name, r in result.items()}
    print(f"amx / vnni512 {speed['int8 amx'] / speed['int8 vnni512']:.2f}x, amx / bf16 "
          f"{speed['int8 amx'] / speed['bf16']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "kernels": kernels.describe(),
                                         "load": os.getloadavg(), "same_vectors": same,
                                         "modes": result}, indent=1))


if __name__ == "__main__":
    main()
