"""encode(dtype="int8") on the amx GEMM against vnni512 and against seqenc bf16, A/B in one
process (interleaved rounds, medians): texts/s, CPU seconds, cosine to fp32, and whether amx's
vectors are vnni512's (both sum exactly: they must be). Wall time: run it in a quiet slot.

    python benchmarks/int8_amx_encode.py --texts 2000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.threads import set_threads

import numpy as np
import torch
from harness import cosines, encode_options, int8_encoder_on, interleaved, read_texts

MODES = {"int8 amx": "amx", "int8 vnni512": "vnni512", "bf16": None}


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]), texts=2000)
    args = parser.parse_args()
    set_threads(args.threads)
    texts = read_texts(args.texts)
    model = SentenceEncoder.from_pretrained()
    encoders = {name: int8_encoder_on(model, gemm) for name, gemm in MODES.items() if gemm}

    def run(name: str) -> np.ndarray:
        if MODES[name] is None:
            return model.encode(texts, dtype="bfloat16")
        model._encoders[torch.int8] = encoders[name]
        return model.encode(texts, dtype="int8")

    reference = model.encode(texts)
    timings = interleaved({name: lambda name=name: run(name) for name in MODES}, args.rounds)
    outputs, walls, cpus = timings.outputs, timings.seconds, timings.cpu_seconds
    same = bool(np.array_equal(outputs["int8 amx"], outputs["int8 vnni512"]))
    print(f"{kernels.describe()}, {args.threads} thread(s), {len(texts)} texts, medians of "
          f"{args.rounds} interleaved rounds, load {os.getloadavg()}; amx's vectors are "
          f"vnni512's: {same}")
    result = {}
    for name in MODES:
        median = statistics.median(walls[name])
        cos = cosines(outputs[name], reference)
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
