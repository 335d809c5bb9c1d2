"""Encode throughput with this build's attention kernel against another build's (only
``_kernels.attention`` swapped: every other kernel is this build's), interleaved rounds in one
process, medians; float32, bfloat16 and int8 encodes over the bench corpus. Wall time: run it
in a quiet slot only. Also the min cosine between the two arms' vectors per dtype.

    python benchmarks/attention_encode_ab.py --baseline-so OLD.so [--texts 2000] [--rounds 3]
        [--threads 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqenc.model import SentenceEncoder
from seqenc.nn import kernels

import numpy as np
import torch
from harness import cosines, encode_options, interleaved, load_kernels, read_texts


def main() -> None:
    ap = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]), texts=2000)
    ap.add_argument("--baseline-so", type=Path, required=True)
    ap.add_argument("--dtype", action="append", default=[])
    args = ap.parse_args()
    texts = read_texts(args.texts)
    torch.set_num_threads(args.threads)
    model = SentenceEncoder.from_pretrained()
    attention = {"old": load_kernels(args.baseline_so).attention,
                 "new": kernels._kernels.attention}
    result = {}
    for dtype in args.dtype or ["float32", "bfloat16", "int8"]:
        def run(arm: str, dtype: str = dtype) -> np.ndarray:
            kernels._kernels.attention = attention[arm]
            return np.asarray(model.encode(texts, dtype=dtype))

        timings = interleaved({arm: lambda arm=arm: run(arm) for arm in attention}, args.rounds)
        cosine = float(cosines(timings.outputs["old"], timings.outputs["new"]).min())
        med = {arm: timings.median(arm) for arm in attention}
        result[dtype] = {"seconds": timings.seconds, "texts_per_s": {k: len(texts) / v
                                                           for k, v in med.items()},
                         "new_vs_old": med["old"] / med["new"], "min_cosine_old_new": cosine}
        print(f"{dtype:9s} old {len(texts) / med['old']:7.1f}  new {len(texts) / med['new']:7.1f}"
              f" texts/s  x{med['old'] / med['new']:.3f}  min cosine {cosine:.7f}", flush=True)
    kernels._kernels.attention = attention["new"]
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "dtypes": result}, indent=1))


if __name__ == "__main__":
    main()
