"""DistributedDataParallel with torchrun: 2 CPU processes (gloo) take the same steps as one
process with the same global batch, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from seqenc.train.recipes import train_classifier

from .helpers import config, job, quiet, weights

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_match_one(data_dir, tokenizer_file, tmp_path):
    cfg = config(epochs=1, batch_size=8, grad_accum=2, lr=3e-3)  # 16 batches -> 8 steps
    single = tmp_path / "single"
    one = train_classifier(job(data_dir, tokenizer_file, single), cfg, echo=quiet)

    ddp = tmp_path / "ddp"
    audit = tmp_path / "audit"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(WORKER), str(audit), "classify",
        "--train", str(data_dir / "train.tsv"), "--dev", str(data_dir / "dev.tsv"),
        "--config", str(data_dir / "sizes.json"), "--tokenizer", str(tokenizer_file),
        "--max-length", "32", "--output", str(ddp), "--epochs", "1", "--batch-size", "8",
        "--grad-accum", "2", "--lr", "3e-3", "--warmup-ratio", "0.1", "--log-every", "1",
        "--seed", "0", "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    a, b = weights(single), weights(ddp)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0, msg=key)
    print("max |ddp - single| =", max(float((a[k] - b[k]).abs().max()) for k in a))

    args = json.loads((ddp / "training_args.json").read_text())
    assert args["world_size"] == 2 and args["total_steps"] == one.total_steps == 8
    lines = [json.loads(line) for line in open(ddp / "metrics.jsonl")]
    evals = [r for r in lines if r["event"] == "eval"]
    assert evals[-1]["accuracy"] == one.best_metrics["accuracy"]  # dev shared out, gathered
    single_losses = [r["loss"] for r in one.history if r["event"] == "train"]
    ddp_losses = [r["loss"] for r in lines if r["event"] == "train"]
    assert len(ddp_losses) == len(single_losses) == 8
    torch.testing.assert_close(torch.tensor(ddp_losses, dtype=torch.float64),
                               torch.tensor(single_losses, dtype=torch.float64), atol=1e-5,
                               rtol=0)

    rank0 = json.loads(Path(f"{audit}.rank0.json").read_text())
    rank1 = json.loads(Path(f"{audit}.rank1.json").read_text())
    assert rank1 == [], f"rank 1 wrote {rank1[:5]}"
    assert any(path.endswith("metrics.jsonl") for _, path in rank0)
    assert any(event == "os.mkdir" and "checkpoints" in path for event, path in rank0)
