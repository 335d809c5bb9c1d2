"""Fine-tune the default model (all-MiniLM-L6-v2) on SST-2 and report dev accuracy.

    python benchmarks/train_sst2.py --mode steps500            # 500 steps, batch 32 (target >= 87%)
    python benchmarks/train_sst2.py --mode epoch               # one epoch, 1894 steps (>= 90%)
    python benchmarks/train_sst2.py --mode epoch --dtype bfloat16
    python benchmarks/train_sst2.py --mode steps500 --resume   # continue an interrupted run

Data: ../shared/data/sst2/train.tsv (60,614 sentences) and dev.tsv (6,735), read relative to
the project root. The run goes through the same code as `seqenc train classify`; the model,
checkpoints, metrics.jsonl and learning_curves.png land in --output. A JSON summary (dev
accuracy, macro-F1, steps, wall time, step rate) is printed and written beside them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from seqenc.choices import DTYPES

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sst2"
MODES = {  # (max_steps, epochs)
    "steps500": (500, 1),
    "epoch": (None, 1),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="steps500")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/runs/sst2-<mode>")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluate on dev every N steps (default: 100 for steps500, "
                             "500 for epoch)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--progress", action="store_true", help="tqdm bar even without a TTY")
    args = parser.parse_args()

    if not (DATA / "train.tsv").exists():
        print(f"SST-2 data not found at {DATA}; this benchmark needs the shared workspace",
              file=sys.stderr)
        return 2
    from seqenc.train.config import TrainConfig
    from seqenc.train.recipes import ClassifyJob, train_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    max_steps, epochs = MODES[args.mode]
    output = args.output or ROOT / "benchmarks" / "runs" / f"sst2-{args.mode}"
    eval_every = args.eval_every or (100 if args.mode == "steps500" else 500)
    cfg = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=args.batch_size,
                      lr=args.lr, dtype=args.dtype, seed=args.seed, eval_every=eval_every,
                      warmup_ratio=0.06, max_grad_norm=1.0, weight_decay=0.01)
    job = ClassifyJob(train=str(DATA / "train.tsv"), dev=str(DATA / "dev.tsv"),
                      output=str(output), init="default", max_length=args.max_length,
                      resume=args.resume)
    start = time.perf_counter()
    result = train_classifier(job, cfg, progress=True if args.progress else None)
    wall = time.perf_counter() - start
    best = result.best_metrics or {}
    train_lines = [r for r in result.history if r.get("event") == "train"]
    summary = {
        "benchmark": f"sst2-{args.mode}",
        "dev_accuracy": best.get("accuracy"),
        "dev_macro_f1": best.get("macro_f1"),
        "best_step": result.best_step,
        "steps": result.steps,
        "total_steps": result.total_steps,
        "train_seconds": round(result.seconds, 1),
        "wall_seconds_this_process": round(wall, 1),
        "steps_per_second": round(result.steps / result.seconds, 3) if result.seconds else None,
        "mean_examples_per_s": round(sum(r["examples_per_s"] for r in train_lines)
                                     / max(len(train_lines), 1), 1),
        "train_config": cfg.to_dict(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(summary, indent=2))
    (output / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
