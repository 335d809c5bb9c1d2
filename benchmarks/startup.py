"""Process start to first vectors: `seqenc encode` of 10 lines vs the equivalent
sentence-transformers script, each a fresh Python process, interleaved, median of N runs.

    python benchmarks/startup.py --runs 7

Both load the same checkpoint from disk (the default model) and write a .npy of 10 vectors;
the clock covers interpreter start, imports, model load, encoding and the write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqenc.model import default_model_path

PEER = """
import sys
import numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
np.save(sys.argv[3], model.encode(texts, convert_to_numpy=True))
"""

LINES = [
    "A man is playing a guitar.", "The stock market fell sharply on Monday.",
    "Scientists discover a new species of frog.", "How do I reset my password?",
    "The team won the championship after extra time.", "Rain is expected later this week.",
    "She reads a book in the garden.", "Oil prices rise on supply worries.",
    "The new phone has a larger screen.", "Children are playing in the park.",
]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    model = str(default_model_path())
    seqenc = str(Path(sys.executable).with_name("seqenc"))
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp, "ten.txt")
        lines.write_text("\n".join(LINES) + "\n", encoding="utf-8")
        commands = {
            "seqenc": [seqenc, "encode", str(lines), "-o", str(Path(tmp, "ours.npy")),
                       "--model", model],
            "sentence-transformers": [sys.executable, "-c", PEER, model, str(lines),
                                      str(Path(tmp, "peer.npy"))],
        }
        for command in commands.values():  # warm the page cache
            timed(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command))
    summary = {name: {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3),
                      "runs": [round(x, 3) for x in t]} for name, t in times.items()}
    summary["ratio_peer_over_seqenc"] = round(
        summary["sentence-transformers"]["median_s"] / summary["seqenc"]["median_s"], 2)
    summary["threads_env"] = os.environ.get("OMP_NUM_THREADS")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
