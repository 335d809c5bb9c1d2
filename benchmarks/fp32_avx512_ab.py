"""float32 encode on an AVX-512 kernel set, A/B in one process (interleaved rounds, medians):
this checkout's GEMM (csrc/gemm_f32.c) with the layer's epilogues fused into it (the default;
weights packed on each call, or once: SEQENC_F32_PACK_ONCE=1) or run separately after it
(SEQENC_F32_GEMM=mkl's layer path, our GEMM still doing the matmuls), another build's C kernels
(``--baseline-so``: the _kernels .so of, e.g., main, built there with `setup.py build_ext
--inplace`; its layers run the separate path), and MKL's GEMM (torch.mm) with the separate
epilogues. Every arm's vectors are compared with the first arm's. Wall time: run it in a quiet
slot only. ``--gemm`` times each GEMM of MiniLM's shapes alone instead, one thread, against MKL
and the FMA probe (csrc/peak.c).

    python benchmarks/fp32_avx512_ab.py --texts 1000 --rounds 3 --threads 2 \
        [--baseline-so ../main/src/seqenc/_kernels.cpython-311-x86_64-linux-gnu.so] [--json F]
    python benchmarks/fp32_avx512_ab.py --gemm [--rows 1200] [--baseline-so ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from seqenc.model import SentenceEncoder
from seqenc.nn import gemm_f32, kernels

import numpy as np
import torch
from harness import encode_options, encode_versus_first, interleaved, load_kernels

SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]  # MiniLM's (K, M)


def encode_arms(model: SentenceEncoder, texts: list[str],
                baseline: Path | None) -> dict[str, Callable[[], np.ndarray]]:
    ours = kernels._kernels
    other = load_kernels(baseline) if baseline else None
    can = kernels.can_gemm_f32

    def arm(built, fused: bool, mkl: bool = False,
            pack_once: bool = False) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            kernels._kernels, gemm_f32.ENABLED = built, fused
            gemm_f32.PACK_ONCE = pack_once
            kernels.can_gemm_f32 = (lambda k, m: False) if mkl else can
            return np.asarray(model.encode(texts))
        return run

    runs = {}
    if other is not None:
        runs["baseline build (--baseline-so)"] = arm(other, False)
    runs["ours, epilogues fused"] = arm(ours, True)
    runs["ours, fused, weights packed once"] = arm(ours, True, pack_once=True)
    runs["ours, epilogues separate"] = arm(ours, False)
    runs["MKL GEMM + separate epilogues"] = arm(ours, False, mkl=True)
    return runs


def gemm_table(rows: int, reps: int, baseline: Path | None) -> dict:
    """GFLOP/s of each GEMM alone (best of reps, arms interleaved), one thread."""
    torch.set_num_threads(1)
    built = {"ours": kernels._kernels}
    if baseline:
        built["baseline"] = load_kernels(baseline)
    peak = kernels._kernels.peak(1, 2_000_000, 1)  # PEAK_FMA512, GFLOP/s
    table: dict = {"fma512_peak_gflops": peak, "rows": rows, "shapes": {}}
    print(f"FMA512 probe, one thread: {peak:.1f} GFLOP/s")
    for k, m in SHAPES:
        a, w, c = torch.randn(rows, k), torch.randn(m, k), torch.empty(rows, m)
        ptrs = (a.data_ptr(), w.data_ptr(), c.data_ptr(), rows, m, k, m, 1)
        arms: dict[str, Callable[[], object]] = {
            name: (lambda b=b, ptrs=ptrs: b.gemm_f32(*ptrs)) for name, b in built.items()}
        arms["mkl"] = lambda a=a, w=w, c=c: torch.mm(a, w.t(), out=c)
        best = {name: min(s) for name, s in interleaved(arms, reps, warm_up=0).seconds.items()}
        gflops = {name: 2 * rows * m * k / s / 1e9 for name, s in best.items()}
        table["shapes"][f"{k}x{m}"] = gflops
        print(f"K {k:5d} M {m:5d}: " + "  ".join(
            f"{name} {g:6.1f} ({g / peak:4.0%})" for name, g in gflops.items()))
    return table


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--baseline-so", type=Path)
    parser.add_argument("--gemm", action="store_true", help="time the GEMMs alone instead")
    parser.add_argument("--rows", type=int, default=1200)
    args = parser.parse_args()
    if not args.gemm:
        encode_versus_first(args, lambda model, texts: encode_arms(model, texts, args.baseline_so))
        return
    result = gemm_table(args.rows, max(args.rounds, 5), args.baseline_so)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
