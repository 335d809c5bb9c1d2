"""Wall and CPU time (user + sys) of encode() per mode on one corpus, interleaved rounds, with
--busy N processes spinning N cores (a shared CPU), to compare int8's levers. CPU time is the
figure to read on a machine others use (a niced job's wall time says nothing); wall time only
in a quiet slot. Modes: fp32, bf16, and int8 with each int8 GEMM that runs here (ours, by name, and
"onednn": torch._int_mm with the AVX-512 (de)quantisation kernels); the best of ours also with
each of seqenc.int8.SCHEDULES (how its work is split into parallel loops).

    python benchmarks/int8_levers.py --texts 1000 --rounds 3 --threads 2 [--busy 1] [--json F]

Run it as `SEQENC_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ...` for the AVX2-only proxy (fp32 on MKL,
int8 on the vpmaddwd kernel). With --threads 2 the CPU time includes the threads' spin waits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from seqenc import int8
from seqenc.bench import busy_cores
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.threads import set_threads

import torch
from harness import CORPUS, cosines, encode_options, int8_encoder_on, interleaved, read_texts


def main() -> None:
    parser = encode_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]), threads=1)
    parser.add_argument("corpus", nargs="?", default=str(CORPUS))
    parser.add_argument("--gemms", default="", help="int8 GEMMs, comma-separated (default all)")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning a core each")
    args = parser.parse_args()
    set_threads(args.threads)
    texts = read_texts(args.texts, args.corpus)
    model = SentenceEncoder.from_pretrained()
    modes: dict[str, tuple[str, torch.nn.Module | None, str]] = {
        "fp32": ("float32", None, "")}
    if kernels.supports_bf16():
        modes["bf16"] = ("bfloat16", None, "")
    gemms = args.gemms.split(",") if args.gemms else [*int8.runnable_gemms(), "onednn"]
    for gemm in gemms:
        if gemm == "onednn" and not int8._VNNI:
            continue
        encoder = int8_encoder_on(model, None if gemm == "onednn" else gemm)
        schedules = int8.SCHEDULES if gemm == gemms[0] and gemm != "onednn" else ("fused",)
        for schedule in schedules:
            modes[f"int8 {gemm} {schedule}"] = ("int8", encoder, schedule)
    reference = model.encode(texts)

    def setup(name: str) -> None:
        _, encoder, schedule = modes[name]
        if encoder is not None:
            model._encoders[torch.int8] = encoder
            int8.SCHEDULE = schedule

    runs = {name: lambda dtype=dtype: model.encode(texts, dtype=dtype)
            for name, (dtype, _, _) in modes.items()}
    with busy_cores(args.busy):
        timings = interleaved(runs, args.rounds, warm_up=0, setup=setup)
    times, walls = timings.cpu_seconds, timings.seconds
    cosine = {name: float(cosines(vectors, reference).mean())
              for name, vectors in timings.outputs.items()}
    base = "bf16" if "bf16" in modes else "fp32"
    best = {name: min(t) for name, t in times.items()}
    wall = {name: min(t) for name, t in walls.items()}
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, {kernels.describe()}, "
          f"load average {os.getloadavg()}, {args.threads} thread(s), {len(texts)} texts, "
          f"{args.busy} busy core(s); best of {args.rounds} rounds", file=sys.stderr)
    for name in modes:
        print(f"{name:22s} CPU s {best[name]:6.2f} ({best[base] / best[name]:4.2f}x {base})  "
              f"wall s {wall[name]:6.2f} ({wall[base] / wall[name]:4.2f}x {base}, "
              f"{len(texts) / wall[name]:6.1f} texts/s)  mean cosine to fp32 {cosine[name]:.5f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cpu_s": times, "wall_s": walls, "cosine": cosine, "load": os.getloadavg(),
            "threads": args.threads, "busy": args.busy, "texts": len(texts),
            "kernels": kernels.describe()}, indent=1))


if __name__ == "__main__":
    main()
