"""Learning curves from a metrics.jsonl log: training loss, dev loss and dev metrics by step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqenc.atomic import atomic_path


def plot_learning_curves(records: list[dict[str, Any]], out: str | Path,
                         title: str = "learning curves") -> Path:
    """Two panels: loss (train and dev) and the dev metrics in [0, 1]. Written atomically."""
    # A bare Figure on an Agg canvas, as viz.py: no pyplot, so the caller's backend and figures
    # are untouched and no window ever opens.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in records if r.get("event") == "train"]
    dev = [r for r in records if r.get("event") == "eval"]
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
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
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out
