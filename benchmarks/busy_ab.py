"""How encode's side-by-side batches (seqenc.threads.run_batches) hold up beside busy cores:
one process, interleaved rounds (variant A, B, ..., OpenVINO, A, B, ...), wall and CPU time
(user + sys of this process) per encode call, and the tail: the seconds a worker sat idle at
the end of a call while another finished its last batch (summed over the workers).

Variants: "main" (run_batches as on the branch given by --baseline, default main: read with
`git show`), "pool" (this checkout's, workers not pinned: SEQENC_PIN=0) and "pool+pin" (this
checkout's default: pinned when there is one worker per allowed CPU); with --peer, OpenVINO's
two-stream THROUGHPUT setup (peers.py) on the same texts, as the yardstick. Wall time only in a
quiet slot; elsewhere read the ratios of CPU time, and those loosely.

    python benchmarks/busy_ab.py --texts 1000 --rounds 3 --threads 2 --busy 1 [--peer] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
import types
from pathlib import Path

import seqenc.model as model_module
from seqenc import threads
from seqenc.bench import busy_cores
from seqenc.model import SentenceEncoder

import torch
from harness import CORPUS, cpu_seconds, read_texts


def baseline_run_batches(ref: str):
    """run_batches as threads.py has it at git ``ref``, in a module of its own."""
    source = subprocess.run(["git", "show", f"{ref}:src/seqenc/threads.py"], check=True,
                            capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout
    module = types.ModuleType(f"threads_{ref}")
    exec(compile(source, f"{ref}:threads.py", "exec"), module.__dict__)
    return module.run_batches


def traced(run_batches, ends: dict[int, float]):
    """run_batches whose steps record, per thread, when that thread's last step ended."""
    def wrapper(step, n, workers):
        def timed(i):
            step(i)
            ends[threading.get_ident()] = time.perf_counter()
        return run_batches(timed, n, workers)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(CORPUS))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning a core each")
    parser.add_argument("--baseline", default="main", help="git ref of the 'main' variant")
    parser.add_argument("--variants", default="main,pool,pool+pin")
    parser.add_argument("--peer", action="store_true", help="also OpenVINO, 2 streams")
    parser.add_argument("--json")
    args = parser.parse_args()
    threads.set_threads(args.threads)
    texts = read_texts(args.texts, args.corpus)
    model = SentenceEncoder.from_pretrained()
    ends: dict[int, float] = {}
    ours = threads.run_batches
    kinds = {"main": (baseline_run_batches(args.baseline), "auto"), "pool": (ours, "0"),
             "pool+pin": (ours, "auto")}
    reference = model.encode(texts, dtype=args.dtype)

    def variant(name):
        run_batches, pin = kinds[name]

        def run():
            threads.PIN = pin
            model_module.run_batches = traced(run_batches, ends)
            try:
                return model.encode(texts, dtype=args.dtype)
            finally:
                model_module.run_batches = ours
        return run

    engines = {name: variant(name) for name in args.variants.split(",")}
    if args.peer:
        from seqenc.peers import build_peers

        peer = build_peers(model, "float32", ("openvino",), 32, args.threads,
                           workdir=Path(tempfile.mkdtemp(prefix="busy-ab-")), streams=(2,))[0]
        engines[peer.name] = lambda: peer.encode(texts)
    for name, run in engines.items():  # warm-up; the same vectors, bit for bit
        got = run()
        if not name.startswith("openvino"):
            assert (got == reference).all(), f"{name}: not the one-at-a-time vectors"
    rows = {name: {"wall": [], "cpu": [], "tail": []} for name in engines}
    with busy_cores(args.busy):
        time.sleep(0.5)  # the spinners running before the first round
        for _ in range(args.rounds):
            for name, run in engines.items():
                ends.clear()
                cpu, start = cpu_seconds(), time.perf_counter()
                run()
                stop = time.perf_counter()
                rows[name]["wall"].append(stop - start)
                rows[name]["cpu"].append(cpu_seconds() - cpu)
                last = max(ends.values(), default=stop)
                rows[name]["tail"].append(sum(last - end for end in ends.values()))
    base = statistics.median(rows[next(iter(rows))]["wall"])
    for name, row in rows.items():
        wall = statistics.median(row["wall"])
        print(f"{name:28s} wall {wall:6.2f} s ({len(texts) / wall:6.1f} texts/s, "
              f"{base / wall:4.2f}x the first) cpu {statistics.median(row['cpu']):6.2f} s "
              f"tail {statistics.median(row['tail']) * 1e3:5.0f} ms  walls "
              + " ".join(f"{w:.2f}" for w in row["wall"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "torch": torch.__version__, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
