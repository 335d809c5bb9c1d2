"""float32 encode on the avx2 kernel set, A/B in one process (interleaved rounds, medians):
this checkout's GEMM (weights packed on every call, the default, or once: SEQENC_F32_PACK_ONCE=1)
against another build's C kernels (``--baseline-so``: the _kernels .so of, e.g., main, built
there with `setup.py build_ext --inplace`) and MKL's GEMM with separate epilogues
(SEQENC_F32_GEMM=mkl). Every arm's vectors are compared with the first arm's. Wall time: run
it in a quiet slot only.

    python benchmarks/fp32_avx2_ab.py --texts 1000 --rounds 3 --threads 2 \
        [--baseline-so ../main/src/seqenc/_kernels.cpython-311-x86_64-linux-gnu.so] [--json F]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from seqenc.model import SentenceEncoder
from seqenc.nn import gemm_f32, kernels

import numpy as np
from harness import encode_options, encode_versus_first, load_kernels


def arms(model: SentenceEncoder, texts: list[str],
         baseline: Path | None) -> dict[str, Callable[[], np.ndarray]]:
    ours = kernels._kernels
    other = load_kernels(baseline) if baseline else None

    def arm(built, ours_gemm: bool, pack_once: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            kernels._kernels = built
            gemm_f32.ENABLED, gemm_f32.PACK_ONCE = ours_gemm, pack_once
            return np.asarray(model.encode(texts))
        return run

    runs = {}
    if other is not None:  # its GEMM packs on each call (it has no packed entry point)
        runs["baseline build (--baseline-so)"] = arm(other, True, False)
    runs["ours, weights packed per call"] = arm(ours, True, False)
    runs["ours, weights packed once"] = arm(ours, True, True)
    runs["MKL GEMM + separate epilogues"] = arm(ours, False, False)
    return runs


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--baseline-so", type=Path)
    args = parser.parse_args()
    encode_versus_first(args, lambda model, texts: arms(model, texts, args.baseline_so))


if __name__ == "__main__":
    main()
