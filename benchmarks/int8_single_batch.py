"""Single-batch calls (a server's case): encode() of one 32-text batch at a time, so the batch runs
on all --threads inside each kernel (no side-by-side batches), bf16 against int8 on each
schedule of our GEMM (--gemm, default int8.GEMM: the best that runs here) and on oneDNN's
torch._int_mm; interleaved rounds, wall time, --busy N cores spinning. Each int8 line names
the kernels its encoder's layers run (int8.encoder_gemms).

    python benchmarks/int8_single_batch.py --busy 1     # in a quiet slot only (wall time)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from seqenc import int8
from seqenc.bench import busy_cores
from seqenc.model import SentenceEncoder
from seqenc.threads import set_threads

import torch

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--gemm", default=int8.GEMM, choices=int8.runnable_gemms(),
                        help="our int8 kernel (default: %(default)s, what encode runs here)")
    args = parser.parse_args()
    set_threads(args.threads)
    texts = [t for t in CORPUS.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:args.texts]
    model = SentenceEncoder.from_pretrained()
    encoders = {}
    default = int8.GEMM
    try:  # the kernel is chosen when the int8 copy is made (int8.layer_gemm reads int8.GEMM)
        for gemm in (args.gemm, None):
            int8.GEMM = gemm
            model._encoders.pop(torch.int8, None)
            encoders[gemm or "onednn"] = model.encoder_for("int8")
    finally:
        int8.GEMM = default
    ran = {name: "+".join(int8.encoder_gemms(e)) for name, e in encoders.items()}
    ours = args.gemm or "onednn"
    modes = [("bf16", "bfloat16", None, None)]
    modes += [(f"int8 {ran[ours]} {s}", "int8", ours, s) for s in int8.SCHEDULES]
    modes += [(f"int8 {ran['onednn']}", "int8", "onednn", "auto")]
    seconds: dict[str, list[float]] = {}
    with busy_cores(args.busy):
        for _ in range(args.rounds):
            for name, dtype, gemm, schedule in modes:
                if gemm:
                    model._encoders[torch.int8] = encoders[gemm]
                    int8.SCHEDULE = schedule
                start = time.perf_counter()
                for i in range(0, len(texts), args.batch):
                    model.encode(texts[i:i + args.batch], dtype=dtype)
                if gemm and model._encoders.get(torch.int8) is not encoders[gemm]:
                    raise RuntimeError(f"encode made a new int8 copy: {name} did not run")
                seconds.setdefault(name, []).append(time.perf_counter() - start)
    print(f"one {args.batch}-text batch per call, {len(texts) // args.batch} calls, "
          f"{args.threads} threads, busy {args.busy}, load {os.getloadavg()}")
    base = min(seconds["bf16"])
    for name, s in seconds.items():
        print(f"{name:28s} best {min(s):.3f} s ({base / min(s):.2f}x bf16)  rounds "
              + " ".join(f"{x:.3f}" for x in s))


if __name__ == "__main__":
    main()
