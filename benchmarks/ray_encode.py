r"""`seqenc encode --engine ray` against the single-process `seqenc encode`: throughput and
peak memory of the whole process tree (driver, Ray's GCS/raylet, workers), same input.

    python benchmarks/ray_encode.py --input benchmarks/runs/sst2-1M.txt --lines 100000
    python benchmarks/ray_encode.py --lines 20000 --ray 1x2 --ray 2x1   # generated input

--ray AxT runs the Ray engine with A actors of T threads each (repeatable); the local run
uses --threads (default: all cores). Runs are interleaved (local, ray..., local, ray...
with --rounds) so background load hits every engine alike. The input recipe for
sst2-1M.txt is in benchmarks/stream_memory.py. Memory: every 0.5 s the script walks /proc
from the child down and sums RSS and PSS (proportional set size: shared pages such as Ray's
object store and libraries are split between the processes mapping them, so the PSS sum
does not count them twice); the peaks of both sums are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_memory import generate, head  # noqa: E402


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of one process, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def tree_memory(root: int) -> tuple[int, int, int]:
    """(RSS sum, PSS sum, processes) of ``root`` and all its descendants."""
    tree, stack, rss, pss, n = _children(), [root], 0, 0, 0
    while stack:
        pid = stack.pop()
        r, p = _memory(pid)
        rss, pss, n = rss + r, pss + p, n + 1
        stack.extend(tree.get(pid, []))
    return rss, pss, n


def run(cmd: list[str]) -> dict:
    peak = {"rss": 0, "pss": 0, "processes": 0}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss, pss, n = tree_memory(child.pid)
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            peak["processes"] = max(peak["processes"], n)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = child.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}):\n{err}")
    summary = [line for line in err.splitlines() if line.startswith(("encoded", "wrote"))]
    return {"seconds": seconds, **peak, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, help="text file, one record a line (default: generated)")
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--ray", action="append", default=None, metavar="AxT",
                    help="actors x threads of a Ray run (repeatable; default 1x2 and 2x1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="local run's threads")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-local", action="store_true",
                    help="skip the single-process run (e.g. 1M lines, compared with a recorded "
                         "one)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    seqenc = str(Path(sys.executable).with_name("seqenc"))
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    data = work / "in.txt"
    if args.input:
        n = head(args.input, args.lines, data)
    else:
        generate(data, args.lines)
        n = args.lines
    configs = args.ray or ["1x2", "2x1"]
    results = []
    try:
        for round_ in range(args.rounds):
            runs = [] if args.no_local else [
                ("local", [seqenc, "encode", str(data), "-o", str(work / "out.parquet"),
                           "--threads", str(args.threads)])]
            for config in configs:
                actors, threads = config.split("x")
                runs.append((f"ray {config}", [
                    seqenc, "encode", "--engine", "ray", str(data), "-o", str(work / "out"),
                    "--actors", actors, "--threads", threads,
                ]))
            for name, cmd in runs:
                shutil.rmtree(work / "out", ignore_errors=True)
                r = run(cmd)
                r.update(engine=name, lines=n, round=round_, lines_per_s=n / r["seconds"])
                results.append(r)
                print(f"{name:10s} {n:,} lines: {r['seconds']:7.1f} s wall, "
                      f"{r['lines_per_s']:6.1f} lines/s, peak tree RSS "
                      f"{r['rss'] / 2**20:6.0f} MiB, PSS {r['pss'] / 2**20:6.0f} MiB "
                      f"({r['processes']} processes)", flush=True)
                for line in r["summary"]:
                    print("    " + line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = [r for r in results if r["engine"] == "local"]
    for r in results:
        if r["engine"] != "local" and local:
            base = local[r["round"]]
            print(f"{r['engine']} / local: throughput {r['lines_per_s'] / base['lines_per_s']:.2f}x"
                  f", peak PSS {r['pss'] / base['pss']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
