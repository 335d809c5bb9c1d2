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

from seqenc import int8
from seqenc.bench import busy_cores
from seqenc.model import SentenceEncoder
from seqenc.threads import set_threads

import torch
from harness import interleaved, read_texts


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
    texts = read_texts(args.texts)
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
    modes = {"bf16": ("bfloat16", None, None)}  # name: (dtype, int8 GEMM, int8 schedule)
    modes |= {f"int8 {ran[ours]} {s}": ("int8", ours, s) for s in int8.SCHEDULES}
    modes[f"int8 {ran['onednn']}"] = ("int8", "onednn", "auto")

    def setup(name: str) -> None:
        _, gemm, schedule = modes[name]
        if gemm:
            model._encoders[torch.int8] = encoders[gemm]
            int8.SCHEDULE = schedule

    def calls(name: str) -> None:
        dtype, gemm, _ = modes[name]
        for i in range(0, len(texts), args.batch):
            model.encode(texts[i:i + args.batch], dtype=dtype)
        if gemm and model._encoders.get(torch.int8) is not encoders[gemm]:
            raise RuntimeError(f"encode made a new int8 copy: {name} did not run")

    with busy_cores(args.busy):
        seconds = interleaved({name: lambda name=name: calls(name) for name in modes},
                              args.rounds, warm_up=0, setup=setup).seconds
    print(f"one {args.batch}-text batch per call, {len(texts) // args.batch} calls, "
          f"{args.threads} threads, busy {args.busy}, load {os.getloadavg()}")
    base = min(seconds["bf16"])
    for name, s in seconds.items():
        print(f"{name:28s} best {min(s):.3f} s ({base / min(s):.2f}x bf16)  rounds "
              + " ".join(f"{x:.3f}" for x in s))


if __name__ == "__main__":
    main()
