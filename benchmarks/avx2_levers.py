"""The avx2 kernel set's levers, A/B in one process (interleaved rounds, medians): float32 on
our AVX2 GEMM with the epilogues inside (nn/gemm_f32.py) against MKL's GEMM and the separate
epilogue passes (SEQENC_F32_GEMM=mkl), and int8 with GELU/LayerNorm/requantisation inside the
int8 GEMM's tasks (int8_layer.FUSING_GEMMS) against the separate passes, on --int8-gemm
(default avx2, the int16 kernel the lever was measured on; avx2-u7s7 is what encode runs on
AVX2-only CPUs). Wall time: run it in a quiet slot only.

The avx2 set runs on AVX-512 CPUs too only when capped, so this script sets SEQENC_ISA=avx2
unless the environment names a set; every line names the set and the int8 kernels that ran.

    python benchmarks/avx2_levers.py --texts 1000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("SEQENC_ISA", "avx2")  # read once, when seqenc.nn.kernels is imported

from seqenc import int8, int8_layer  # noqa: E402
from seqenc.model import SentenceEncoder  # noqa: E402
from seqenc.nn import gemm_f32, kernels  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "../shared/data/bench/corpus.txt"


def modes(model: SentenceEncoder, texts: list[str], gemm: str
          ) -> dict[str, Callable[[], np.ndarray]]:
    default_fusing = int8_layer.FUSING_GEMMS
    int8.GEMM = gemm  # the int8 copy's layers take their kernel from it (int8.layer_gemm)
    encoder = model.encoder_for("int8")
    ran = int8.encoder_gemms(encoder)
    # the FFN down projection may run a kernel of its own (avx2-u8s7 beside avx2-u7s7): both fuse
    unfused = tuple(g for g in default_fusing if g not in ran)

    def fp32(ours: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = ours
            return np.asarray(model.encode(texts))
        return run

    def int8_mode(fused: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = True
            int8_layer.FUSING_GEMMS = unfused + ran if fused else unfused
            # "fused": one loop per GEMM whatever the batches (auto would pick openmp for a
            # lone batch on several threads, where neither mode runs the epilogues inside)
            int8.SCHEDULE = "fused"
            if model.encoder_for("int8") is not encoder:
                raise RuntimeError("encode made a new int8 copy: not the kernels named")
            return np.asarray(model.encode(texts, dtype="int8"))
        return run

    isa, kernel = kernels.ISA, "+".join(ran)
    ours_f32 = "AVX2" if isa == "avx2" else "AVX-512"
    # SEQENC_F32_GEMM=mkl: PyTorch's GEMM on the avx2 set, gemm_f32.c alone on the others
    unfused_f32 = "MKL" if isa == "avx2" else "own AVX-512 GEMM"
    return {f"fp32 {unfused_f32} + separate epilogues ({isa} set)": fp32(False),
            f"fp32 own {ours_f32} GEMM, fused ({isa} set)": fp32(True),
            f"int8 {kernel} separate GELU/LN": int8_mode(False),
            f"int8 {kernel} epilogues in the GEMM tasks": int8_mode(True)}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8-gemm", default="avx2", choices=int8.runnable_gemms())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = [t for t in CORPUS.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:args.texts]
    torch.set_num_threads(args.threads)
    model = SentenceEncoder.from_pretrained()
    runs = modes(model, texts, args.int8_gemm)
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    reference = outputs[next(iter(runs))]  # fp32, separate epilogues
    result = {}
    for name in runs:
        median = statistics.median(times[name])
        cos = cosines(outputs[name], reference)
        result[name] = {"seconds": times[name], "median_s": median,
                        "texts_per_s": len(texts) / median, "min_cosine": float(cos.min()),
                        "mean_cosine": float(cos.mean())}
        print(f"{name:52s} {median:7.3f} s {len(texts) / median:8.1f} texts/s  "
              f"cosine to fp32 separate min {cos.min():.6f} mean {cos.mean():.6f}")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "isa": kernels.ISA,
                                         "int8_gemms": list(int8.encoder_gemms(
                                             model.encoder_for("int8"))),
                                         "modes": result}, indent=1))


if __name__ == "__main__":
    main()
