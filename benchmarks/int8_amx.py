"""int8 GEMM kinds head to head on MiniLM's shapes, A/B in one process (interleaved rounds,
medians): csrc/gemm_int8.c's kernels (default: amx against vnni512) on N token rows through
(K, M) = (384, 1152) QKV, (384, 384) attention out, (384, 1536) FFN up with bias + GELU in its
epilogue, (1536, 384) FFN down. Two paths per shape: "gemm" multiplies rows quantised already
(gemm_int8: the GEMM and its dequantising epilogue) and "fused" quantises float32 rows on the
way in (quant_gemm_int8, what encode's int8 layers run). GOP/s = 2 N K M / seconds; the medians
of --rounds rounds of --reps calls each (and the fastest round's). Wall time: run it in a quiet
slot.

    python benchmarks/int8_amx.py [--rows 1200] [--threads 1,2] [--kinds amx,vnni512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc import int8
from seqenc.nn.kernels import _kernels

import torch

SHAPES = {"qkv 384x1152": (384, 1152, False), "out 384x384": (384, 384, False),
          "up 384x1536 +gelu": (384, 1536, True), "down 1536x384": (1536, 384, False)}


def setup(kind: str, n: int, k: int, m: int, gelu: bool, g: torch.Generator):
    """The two calls for one kernel and shape, each a function of no arguments."""
    w = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
    packed, corr = int8.pack_int8(w, kind)
    x = torch.randn(n, k, generator=g)
    q, scale = int8.quantize_rows_kernel(x, kind)
    col_scale, bias = torch.rand(m, generator=g) * 1e-3, torch.randn(m, generator=g)
    out = torch.empty(n, m)
    code, threads = int8._GEMMS[kind][0], torch.get_num_threads()
    epilogue = (bias.data_ptr(), 0, 0, 0, 0, 0.0) if gelu else ()
    keep = (w, packed, corr, x, q, scale, col_scale, bias, out)  # alive while the calls are

    def gemm() -> None:
        _kernels.gemm_int8(code, q.data_ptr(), packed.data_ptr(), corr.data_ptr(),
                           scale.data_ptr(), col_scale.data_ptr(), out.data_ptr(), n, m, k, m,
                           threads, threads > 1)

    def fused() -> None:
        _kernels.quant_gemm_int8(code, x.data_ptr(), 0, packed.data_ptr(), corr.data_ptr(),
                                 col_scale.data_ptr(), out.data_ptr(), n, m, k, m, threads,
                                 *epilogue)

    return {"gemm": gemm, "fused": fused}, keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--kinds", default="amx,vnni512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread: time by this thread's CPU time, not wall time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    runs = int8.runnable_gemms()
    if missing := [kind for kind in kinds if kind not in runs]:
        raise SystemExit(f"{missing} do not run here (runs: {runs})")
    g = torch.Generator().manual_seed(0)
    results = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        # one thread: the calls run on this one, whose CPU time leaves out the time slices
        # other processes take on a shared machine (wall time for more threads)
        clock = time.thread_time if threads == 1 and args.cpu_time else time.perf_counter
        for shape, (k, m, gelu) in SHAPES.items():
            calls = {kind: setup(kind, args.rows, k, m, gelu, g) for kind in kinds}
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for kind in kinds:
                    for path, call in calls[kind][0].items():
                        call()  # warm
                        start = clock()
                        for _ in range(args.reps):
                            call()
                        times.setdefault((kind, path), []).append(
                            (clock() - start) / args.reps)
            for (kind, path), seconds in times.items():
                median, fastest = statistics.median(seconds), min(seconds)
                gops = 2 * args.rows * k * m / median / 1e9
                results.append({"threads": threads, "shape": shape, "kind": kind, "path": path,
                                "ms": median * 1e3, "gops": gops, "min_ms": fastest * 1e3})
                print(f"{threads} thr  {shape:20s} {path:5s} {kind:8s} {median * 1e3:7.3f} ms "
                      f"{gops:7.1f} GOP/s (fastest round {fastest * 1e3:7.3f} ms, "
                      f"{2 * args.rows * k * m / fastest / 1e9:7.1f} GOP/s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
