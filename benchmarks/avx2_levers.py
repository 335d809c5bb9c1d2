"""The avx2 kernel set's levers, A/B in one process (interleaved rounds, medians): float32 on
our AVX2 GEMM with the epilogues inside (nn/gemm_f32.py) against MKL's GEMM and the separate
epilogue passes (SEQENC_F32_GEMM=mkl), and int8 with GELU/LayerNorm/requantisation inside the
int16 GEMM's tasks against the separate passes. Wall time: run it in a quiet slot only.

    python benchmarks/avx2_levers.py --texts 1000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from seqenc import int8_layer
from seqenc.model import SentenceEncoder
from seqenc.nn import gemm_f32

CORPUS = Path(__file__).resolve().parents[1] / "../shared/data/bench/corpus.txt"


def modes(model: SentenceEncoder, texts: list[str]) -> dict[str, Callable[[], np.ndarray]]:
    def fp32(ours: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = ours
            return np.asarray(model.encode(texts))
        return run

    def int8_mode(fused: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = True
            int8_layer.FUSING_GEMMS = ("vnni512", "avx2") if fused else ("vnni512",)
            return np.asarray(model.encode(texts, dtype="int8"))
        return run

    return {"fp32 MKL + separate epilogues": fp32(False),
            "fp32 own AVX2 GEMM, fused": fp32(True),
            "int8 separate GELU/LN": int8_mode(False),
            "int8 epilogues in the GEMM tasks": int8_mode(True)}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = [t for t in CORPUS.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:args.texts]
    torch.set_num_threads(args.threads)
    model = SentenceEncoder.from_pretrained()
    runs = modes(model, texts)
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    reference = outputs["fp32 MKL + separate epilogues"]
    result = {}
    for name in runs:
        median = statistics.median(times[name])
        cos = cosines(outputs[name], reference)
        result[name] = {"seconds": times[name], "median_s": median,
                        "texts_per_s": len(texts) / median, "min_cosine": float(cos.min()),
                        "mean_cosine": float(cos.mean())}
        print(f"{name:34s} {median:7.3f} s {len(texts) / median:8.1f} texts/s  "
              f"cosine to fp32 MKL min {cos.min():.6f} mean {cos.mean():.6f}")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "modes": result}, indent=1))


if __name__ == "__main__":
    main()
