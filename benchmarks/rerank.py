"""Cross-encoder pairs/s: seqenc's CrossEncoder vs sentence-transformers' CrossEncoder.

    python benchmarks/rerank.py MODEL_DIR [--pairs N] [--rounds R] [--batch-size B] [--threads T]

Both score the same STS-B dev pairs (../shared/data/stsbenchmark/sts-dev.csv) from the same
directory, rounds interleaved (seqenc, peer, seqenc, peer, ...) so a busy machine slows both
alike; the best round of each is compared. Also checks the scores agree. Prints one JSON
object and writes benchmarks/results/rerank.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
STS_DEV = ROOT.parent / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"


def read_pairs(n: int) -> list[tuple[str, str]]:
    pairs = []
    with open(STS_DEV, encoding="utf-8") as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            pairs.append((cells[5], cells[6]))
    return pairs[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from seqenc.crossencoder import CrossEncoder

    from sentence_transformers import CrossEncoder as PeerCrossEncoder

    pairs = read_pairs(args.pairs)
    ours = CrossEncoder.from_pretrained(args.model)
    peer = PeerCrossEncoder(args.model, device="cpu")
    peer.model.eval()
    a = ours.predict(pairs, batch_size=args.batch_size)
    b = peer.predict(pairs, batch_size=args.batch_size)
    times: dict[str, list[float]] = {"seqenc": [], "sentence-transformers": []}
    for _ in range(args.rounds):
        for name, run in (("seqenc", lambda: ours.predict(pairs, batch_size=args.batch_size)),
                          ("sentence-transformers",
                           lambda: peer.predict(pairs, batch_size=args.batch_size))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    rate = {k: len(pairs) / min(v) for k, v in times.items()}
    result = {
        "model": str(args.model), "pairs": len(pairs), "batch_size": args.batch_size,
        "rounds": args.rounds, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.processor() or platform.machine(),
        "pairs_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio": round(rate["seqenc"] / rate["sentence-transformers"], 3),
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "max_abs_score_diff": float(np.abs(np.asarray(a) - np.asarray(b)).max()),
    }
    out = ROOT / "benchmarks" / "results" / "rerank.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
