"""The quality of encode(dtype="int8") on each int8 kernel named, through the real kernels: mean /
min cosine to fp32 on the first --texts bench lines and STS-B dev Spearman x 100 next to fp32's
(../shared/data/stsbenchmark/sts-dev.csv). The bar for offering int8 (issue 14): mean cosine
>= 0.995 and Spearman within 0.5 of fp32. One thread, CPU-bound: fine on a shared machine.

    python benchmarks/int8_avx2_quality.py avx2-u7s7 avx2-u8s7 avx2 [--texts 1000] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqenc import int8
from seqenc.model import SentenceEncoder

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gemms", nargs="+", help="names of int8.runnable_gemms()")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from scipy.stats import spearmanr

    torch.set_num_threads(1)
    texts = (DATA / "bench" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    texts = texts[:args.texts]
    rows = [r.split("\t") for r in
            (DATA / "stsbenchmark" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()]
    gold = np.array([float(r[4]) for r in rows])
    model = SentenceEncoder.from_pretrained()

    def sts(dtype: str) -> float:
        a = model.encode([r[5] for r in rows], dtype=dtype)
        b = model.encode([r[6] for r in rows], dtype=dtype)
        return 100 * float(spearmanr((a * b).sum(1), gold).statistic)

    reference = model.encode(texts)
    results: dict[str, dict] = {"fp32": {"sts_spearman": sts("float32")}}
    print("fp32", results["fp32"], flush=True)
    for gemm in args.gemms:
        int8.GEMM = gemm
        model._encoders.pop(torch.int8, None)
        got = model.encode(texts, dtype="int8")
        layers = sorted({m.gemm for m in model._encoders[torch.int8].modules()
                         if isinstance(m, int8.Int8Linear)})
        cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(
            reference, axis=1)
        spearman = sts("int8")
        results[gemm] = {"layers_on": layers, "mean_cosine": float(cos.mean()),
                         "min_cosine": float(cos.min()), "sts_spearman": spearman,
                         "sts_delta": spearman - results["fp32"]["sts_spearman"]}
        print(gemm, results[gemm], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "sts": "sts-dev.csv",
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
