"""seqenc vs sentence-transformers throughput on the shared benchmark corpus.

    python benchmarks/throughput.py [--texts N] [--rounds R] [--dtype float32 --dtype bfloat16]

Same as `seqenc bench`. Writes benchmarks/results/throughput.json and throughput.png.
"""

from __future__ import annotations

import sys

from seqenc.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
