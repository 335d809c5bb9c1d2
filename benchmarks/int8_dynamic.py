"""Does PyTorch's dynamic int8 quantisation keep all-MiniLM-L6-v2's embeddings? Speed and
cosine to fp32 of `torch.ao.quantization.quantize_dynamic` on seqenc's encoder.

    python benchmarks/int8_dynamic.py --threads 2 --texts 1000

Variants: int8 weights per tensor / per output channel, all linear layers or all but the
feed-forward down-projections (the most sensitive ones). Activations are quantised per tensor
at run time (fbgemm), which is where the error comes from: one outlier token sets the scale
for the whole batch. Prints sentences/s next to fp32 in the same run and min / mean cosine.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "bench" / "corpus.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()

    from seqenc import SentenceEncoder
    from seqenc.allocator import tune_memory

    import numpy as np
    import torch
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    warnings.filterwarnings("ignore")  # torch.ao deprecation notices
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_memory()
    model = SentenceEncoder.from_pretrained("default")
    texts = args.corpus.read_text(encoding="utf-8").splitlines()[: args.texts]
    fp32 = model.encoder

    def timed(encoder) -> tuple[float, np.ndarray]:
        model._encoders[torch.float32] = encoder
        model.encode(texts[:64])  # warm-up
        start = time.perf_counter()
        vectors = model.encode(texts)
        return len(texts) / (time.perf_counter() - start), vectors

    base_speed, reference = timed(fp32)
    linears = [n for n, m in fp32.named_modules() if isinstance(m, torch.nn.Linear)]
    variants = {
        "per-tensor, all linears": (linears, default_dynamic_qconfig),
        "per-channel, all linears": (linears, per_channel_dynamic_qconfig),
        "per-channel, all but FFN down": ([n for n in linears if not n.endswith(".down")],
                                          per_channel_dynamic_qconfig),
    }
    rows = [{"variant": "fp32", "sentences_per_s": round(base_speed, 1), "speedup": 1.0,
             "min_cosine": 1.0, "mean_cosine": 1.0}]
    for name, (names, qconfig) in variants.items():
        quantized = quantize_dynamic(copy.deepcopy(fp32), {n: qconfig for n in names},
                                     dtype=torch.qint8)
        speed, vectors = timed(quantized)
        cos = (vectors * reference).sum(axis=1)  # both L2-normalised
        rows.append({"variant": name, "sentences_per_s": round(speed, 1),
                     "speedup": round(speed / base_speed, 2),
                     "min_cosine": round(float(cos.min()), 5),
                     "mean_cosine": round(float(cos.mean()), 5)})
        print(rows[-1], flush=True)
    model._encoders[torch.float32] = fp32
    print(json.dumps({"texts": len(texts), "threads": torch.get_num_threads(), "rows": rows},
                     indent=2))


if __name__ == "__main__":
    main()
