"""The avx2 kernel set's levers, A/B in one process (interleaved rounds, medians): float32 on
our AVX2 GEMM with the epilogues inside (nn/gemm_f32.py) against MKL's GEMM and the separate
epilogue passes (SEQENC_F32_GEMM=mkl), and int8 with GELU/LayerNorm/requantisation inside the
int8 GEMM's tasks (int8_layer.FUSING_GEMMS) against the separate passes, on --int8-gemm
(default avx2, the int16 kernel the lever was measured on; avx2-u7s7 is what encode runs on
AVX2-only CPUs). Wall time: run it in a quiet slot only.

The avx2 set runs on AVX-512 CPUs too only when capped, so this script sets SEQENC_ISA=avx2
unless the environment names a set; every line names the set and the int8 kernels that ran.

    python benchmarks/avx2_levers.py --texts 1000 --rounds 3 --threads 2 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

os.environ.setdefault("SEQENC_ISA", "avx2")  # read once, when seqenc.nn.kernels is imported

from seqenc import int8, int8_layer  # noqa: E402
from seqenc.model import SentenceEncoder  # noqa: E402
from seqenc.nn import gemm_f32, kernels  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness import cosines, encode_options, interleaved, read_texts  # noqa: E402


def modes(model: SentenceEncoder, texts: list[str], gemm: str
          ) -> dict[str, Callable[[], np.ndarray]]:
    default_fusing = int8_layer.FUSING_GEMMS
    int8.GEMM = gemm  # the int8 copy's layers take their kernel from it (int8.layer_gemm)
    encoder = model.encoder_for("int8")
    ran = int8.encoder_gemms(encoder)
    # the FFN down projection may run a kernel of its own (avx2-u8s7 beside avx2-u7s7): both fuse
    unfused = tuple(g for g in default_fusing if g not in ran)

    def fp32(ours: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = ours
            return np.asarray(model.encode(texts))
        return run

    def int8_mode(fused: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            gemm_f32.ENABLED = True
            int8_layer.FUSING_GEMMS = unfused + ran if fused else unfused
            # "fused": one loop per GEMM whatever the batches (auto would pick openmp for a
            # lone batch on several threads, where neither mode runs the epilogues inside)
            int8.SCHEDULE = "fused"
            if model.encoder_for("int8") is not encoder:
                raise RuntimeError("encode made a new int8 copy: not the kernels named")
            return np.asarray(model.encode(texts, dtype="int8"))
        return run

    isa, kernel = kernels.ISA, "+".join(ran)
    ours_f32 = "AVX2" if isa == "avx2" else "AVX-512"
    # SEQENC_F32_GEMM=mkl: PyTorch's GEMM on the avx2 set, gemm_f32.c alone on the others
    unfused_f32 = "MKL" if isa == "avx2" else "own AVX-512 GEMM"
    return {f"fp32 {unfused_f32} + separate epilogues ({isa} set)": fp32(False),
            f"fp32 own {ours_f32} GEMM, fused ({isa} set)": fp32(True),
            f"int8 {kernel} separate GELU/LN": int8_mode(False),
            f"int8 {kernel} epilogues in the GEMM tasks": int8_mode(True)}


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--int8-gemm", default="avx2", choices=int8.runnable_gemms())
    args = parser.parse_args()
    texts = read_texts(args.texts)
    torch.set_num_threads(args.threads)
    model = SentenceEncoder.from_pretrained()
    timings = interleaved(modes(model, texts, args.int8_gemm), args.rounds)
    reference = next(iter(timings.outputs.values()))  # fp32, separate epilogues
    result = {}
    for name, output in timings.outputs.items():
        median = timings.median(name)
        cos = cosines(output, reference)
        result[name] = {"seconds": timings.seconds[name], "median_s": median,
                        "texts_per_s": len(texts) / median, "min_cosine": float(cos.min()),
                        "mean_cosine": float(cos.mean())}
        print(f"{name:52s} {median:7.3f} s {len(texts) / median:8.1f} texts/s  "
              f"cosine to fp32 separate min {cos.min():.6f} mean {cos.mean():.6f}")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "isa": kernels.ISA,
                                         "int8_gemms": list(int8.encoder_gemms(
                                             model.encoder_for("int8"))),
                                         "modes": result}, indent=1))


if __name__ == "__main__":
    main()
