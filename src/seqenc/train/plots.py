"""Learning curves from a metrics.jsonl log: training loss, dev loss and dev metrics by step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqenc.atomic import atomic_path


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def plot_learning_curves(records: list[dict[str, Any]], out: str | Path,
                         title: str = "learning curves") -> Path:
    """Two panels: loss (train and dev) and the dev metrics in [0, 1]. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("event") == "train"]
    dev = [r for r in records if r.get("event") == "eval"]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if dev:
        ax_loss.plot([r["step"] for r in dev], [r["loss"] for r in dev], "o-", label="dev")
    ax_loss.set(xlabel="optimizer step", ylabel="loss", title="loss")
    ax_loss.legend(loc="upper right")
    metric_names = [k for k in ("accuracy", "macro_f1", "masked_accuracy") if dev and k in dev[0]]
    for name in metric_names:
        ax_metric.plot([r["step"] for r in dev], [r[name] for r in dev], "o-", label=name)
    ax_metric.set(xlabel="optimizer step", title="dev metrics")
    if metric_names:
        ax_metric.legend(loc="lower right")
    else:
        ax_metric.text(0.5, 0.5, "no dev set", ha="center", va="center",
                       transform=ax_metric.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return out
