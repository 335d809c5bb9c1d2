r"""Peak memory of `seqenc encode` at growing corpus sizes: it should stay flat.

    python benchmarks/stream_memory.py                      # 1M generated lines: 10k, 100k, 1M
    python benchmarks/stream_memory.py --lines 20000        # quick check: 200, 2k, 20k
    python benchmarks/stream_memory.py --input corpus.txt --sizes 1000,10000
    python benchmarks/stream_memory.py --lines 20000 -- --precision int8   # extra encode args

The 1M-line run in benchmarks/RESULTS.md reads SST-2's train sentences repeated to 1M lines:

    tail -n +2 ../shared/data/sst2/train.tsv | cut -f1 > /tmp/sst2.txt
    for i in $(seq 17); do cat /tmp/sst2.txt; done | head -n 1000000 \
        > benchmarks/runs/sst2-1M.txt
    python benchmarks/stream_memory.py --input benchmarks/runs/sst2-1M.txt \
        --sizes 10000,100000,1000000

Each size runs `seqenc encode` as a child process on the first N lines and reports the child's
peak resident memory: ru_maxrss from wait4 (exact), and the largest VmRSS seen while sampling
/proc (or psutil) every 50 ms. Encoding is the slow part: the full 1M lines take on the order
of an hour on a few CPU cores, so use --lines for a quick look.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = (
    "the a of and to in is was for on that with as by at from it this be are have not or an "
    "which their new city model river market team night data music light water people house "
    "report system season garden science window history morning language village council "
    "quickly slowly quietly suddenly finally carefully announced discovered built opened "
    "closed explained followed reached expected remained increased trained visited"
).split()


def generate(path: Path, lines: int, seed: int = 0) -> None:
    """Sentences of 3 to 60 words: mixed lengths, so batches pad as real corpora do."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            words = rng.choices(WORDS, k=rng.randint(3, 60))
            f.write(" ".join(words).capitalize() + ".\n")


def head(source: Path, lines: int, dest: Path) -> int:
    """Copy the first ``lines`` lines of ``source``; returns how many there were."""
    n = 0
    with open(source, "rb") as src, open(dest, "wb") as out:
        for n, line in enumerate(src, start=1):  # noqa: B007 - n is the count afterwards
            if n > lines:
                return lines
            out.write(line)
    return n


def rss_bytes(pid: int) -> int | None:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        pass
    except Exception:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_encode(seqenc: str, corpus: Path, out: Path, extra: list[str]) -> dict:
    cmd = [seqenc, "encode", str(corpus), "-o", str(out), "--quiet", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    sampled = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal sampled
        while not done.is_set():
            rss = rss_bytes(proc.pid)
            if rss:
                sampled = max(sampled, rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read()  # drain, so a chatty child cannot block on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"seqenc encode failed ({proc.returncode}):\n{stderr.decode(errors='replace')}")
    return {
        "seconds": seconds,
        "peak_rss": usage.ru_maxrss * 1024,  # Linux reports kilobytes
        "sampled_rss": sampled,
        "output_bytes": out.stat().st_size,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines to generate")
    parser.add_argument("--input", type=Path, help="use this text file instead of generating")
    parser.add_argument("--sizes", help="comma-separated line counts (default: lines/100, /10, 1)")
    parser.add_argument("--seqenc", default=shutil.which("seqenc") or "seqenc",
                        help="the seqenc executable")
    parser.add_argument("extra", nargs="*", help="extra `seqenc encode` arguments, after --")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="seqenc-mem-") as tmp:
        tmp = Path(tmp)
        corpus = args.input
        if corpus is None:
            corpus = tmp / "corpus.txt"
            generate(corpus, args.lines)
        total = args.lines if args.input is None else sum(1 for _ in open(corpus, "rb"))
        sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                 else sorted({max(1, total // 100), max(1, total // 10), total}))
        print(f"{'lines':>10} {'seconds':>9} {'records/s':>10} {'peak RSS':>10} "
              f"{'sampled':>10} {'output':>10}")
        rows = []
        for size in sizes:
            prefix = tmp / f"head-{size}.txt"
            n = head(corpus, size, prefix)
            r = run_encode(args.seqenc, prefix, tmp / "out.npy", args.extra)
            rows.append((n, r))
            print(f"{n:>10,} {r['seconds']:>9.1f} {n / r['seconds']:>10,.0f} "
                  f"{r['peak_rss'] / 2**20:>7.0f} MiB {r['sampled_rss'] / 2**20:>6.0f} MiB "
                  f"{r['output_bytes'] / 2**20:>6.1f} MiB", flush=True)
            prefix.unlink()
        if len(rows) > 1:
            (n0, r0), (n1, r1) = rows[0], rows[-1]
            growth = (r1["peak_rss"] - r0["peak_rss"]) / 2**20
            print(f"peak RSS grew by {growth:+.0f} MiB from {n0:,} to {n1:,} lines "
                  f"({n1 / n0:.0f}x the data)")


if __name__ == "__main__":
    main()
