"""A/B of builds of the C kernels in one process: each build's _kernels .so loaded side by
side and swapped in before each call, the calls interleaved (A B A B ...), so both see the same
CPU state (on a shared host the tile unit's speed drifts by 3x between seconds). Per step of
one MiniLM layer (amx_layer_steps.py's), 1 thread (the thread's CPU time) or more (wall
time): medians per build, and the median of the paired ratios (call of build 0 / next call of
build i).

    python benchmarks/amx_kernels_ab.py OLD.so NEW.so --rows 1184 64 --reps 40 [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc.allocator import tune_memory
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.threads import set_threads

from amx_layer_steps import SHAPES, first_layers, steps
from harness import interleaved, load_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builds", type=Path, nargs="+")
    parser.add_argument("--rows", type=int, nargs="+", default=[1184, 64])
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--dtypes", nargs="+", default=["int8"])
    parser.add_argument("--steps", nargs="+")
    parser.add_argument("--threads", type=int, default=1,
                        help="2: int8 runs its 2-thread schedule (openmp: quantise, then panel "
                             "tasks); wall time then, not CPU time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    set_threads(args.threads)
    tune_memory()
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    builds = [load_kernels(p) for p in args.builds]
    layers = first_layers(SentenceEncoder.from_pretrained(), args.dtypes)

    def install(i: int) -> None:
        kernels._kernels = builds[i]

    def peaks() -> dict[str, float]:
        """AMX-INT8 and AMX-BF16 register-only peaks of this core now (GOP/s, medians of 5)."""
        return {name: statistics.median(kernels._kernels.peak(kind, 20000, 1) for _ in range(5))
                for name, kind in (("amx_int8", 5), ("amx_bf16", 4))}

    result = {"peaks_before": peaks()}
    print("peaks before (GOP/s, 1 core):", result["peaks_before"], flush=True)
    for n in args.rows:
        for dtype, w in layers.items():
            for name, f in steps(w, n, dtype).items():
                if args.steps and name not in args.steps:
                    continue
                times = list(interleaved(dict.fromkeys(range(len(builds)), f), args.reps,
                                         warm_up=2, clock=clock, setup=install).seconds.values())
                ms = [statistics.median(t) * 1e3 for t in times]
                ratios = [statistics.median(a / b for a, b in zip(times[0], t, strict=True))
                          for t in times]
                m, k = SHAPES.get(name, (0, 0))
                result[f"{dtype} {name} N={n}"] = {"ms": ms, "ratio_to_first": ratios,
                                                   "min_ms": [min(t) * 1e3 for t in times]}
                print(f"{dtype:5s} N={n:5d} {name:8s} " + "  ".join(
                    f"{x:7.3f} ms x{r:4.2f}" for x, r in zip(ms, ratios, strict=True))
                    + (f"   {2 * n * m * k / min(ms) / 1e6:5.0f} GOP/s best" if m else ""),
                    flush=True)
    result["peaks_after"] = peaks()
    print("peaks after (GOP/s, 1 core):", result["peaks_after"], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"builds": [str(p) for p in args.builds], **result},
                                        indent=1))


if __name__ == "__main__":
    main()
