"""int8 on AVX2 without VNNI, A/B in one process (interleaved rounds, medians): seqenc fp32 against
int8 on each AVX2 kernel of csrc/gemm_int8_avx2.c — the int16 one (vpmaddwd, 8-bit operands),
avx2-u8s7 (vpmaddubsw, 8-bit activations, 7-bit weights), avx2-u7s7 (7-bit both, the FFN down
projection on avx2-u8s7: int8.EIGHT_BIT_INPUTS) — and the last two with GELU / LayerNorm /
requantisation inside their GEMM tasks ("fused": int8_layer.FUSING_GEMMS). Wall time: run it in a
quiet slot; the CPU seconds (user + sys) are the figure to read on a shared machine.

    python benchmarks/int8_avx2.py --texts 1000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from seqenc import int8_layer
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.threads import set_threads

import numpy as np
import torch
from harness import cosines, encode_options, int8_encoder_on, interleaved, read_texts

# mode -> (int8 kernel or None for fp32, fused epilogues)
MODES = {"fp32": (None, False),
         "int8 avx2 (int16 vpmaddwd)": ("avx2", False),
         "int8 avx2-u8s7": ("avx2-u8s7", False),
         "int8 avx2-u8s7 fused": ("avx2-u8s7", True),
         "int8 avx2-u7s7 (+ down on u8s7)": ("avx2-u7s7", False),
         "int8 avx2-u7s7 (+ down on u8s7) fused": ("avx2-u7s7", True)}


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--modes", default="", help="names of MODES, comma-separated (default all)")
    args = parser.parse_args()
    set_threads(args.threads)
    texts = read_texts(args.texts)
    model = SentenceEncoder.from_pretrained()
    wanted = [m for m in args.modes.split(",") if m] or list(MODES)
    encoders: dict[str, torch.nn.Module] = {}
    for name in wanted:
        gemm, _ = MODES[name]
        if gemm is not None and gemm not in encoders:
            encoders[gemm] = int8_encoder_on(model, gemm)

    def run(name: str) -> np.ndarray:
        gemm, fused = MODES[name]
        if gemm is None:
            return model.encode(texts)
        model._encoders[torch.int8] = encoders[gemm]
        int8_layer.FUSING_GEMMS = ("vnni512", gemm, "avx2-u8s7") if fused else ("vnni512",)
        vectors = model.encode(texts, dtype="int8")
        assert model._encoders[torch.int8] is encoders[gemm]  # ran the mode's kernels
        return vectors

    reference = model.encode(texts)
    timings = interleaved({name: lambda name=name: run(name) for name in wanted}, args.rounds)
    outputs, walls, cpus = timings.outputs, timings.seconds, timings.cpu_seconds
    base = statistics.median(walls["fp32"]) if "fp32" in walls else None
    result = {}
    print(f"{kernels.describe()}, {args.threads} thread(s), {len(texts)} texts, medians of "
          f"{args.rounds} interleaved rounds, load {os.getloadavg()}")
    for name in wanted:
        median = statistics.median(walls[name])
        cos = cosines(outputs[name], reference)
        result[name] = {"seconds": walls[name], "cpu_seconds": cpus[name], "median_s": median,
                        "texts_per_s": len(texts) / median,
                        "vs_fp32": base / median if base else None,
                        "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
        ratio = f"{base / median:5.2f}x fp32" if base else ""
        print(f"{name:34s} {median:7.3f} s {len(texts) / median:7.1f} texts/s {ratio}  CPU "
              f"{statistics.median(cpus[name]):6.2f} s  cosine to fp32 min {cos.min():.6f} "
              f"mean {cos.mean():.6f}")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "kernels": kernels.describe(),
                                         "load": os.getloadavg(), "modes": result}, indent=1))


if __name__ == "__main__":
    main()
