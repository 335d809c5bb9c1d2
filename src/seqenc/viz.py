"""Attention heatmaps: where each token looks, per layer and per head.

matplotlib is imported inside ``plot_attention`` (Agg canvas, no display needed), so
``import seqenc.viz`` stays cheap and matplotlib stays an optional dependency (``seqenc[viz]``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import torch

from .extras import require
from .nn.encoder import Encoder

MAX_LABELLED_TOKENS = 40  # beyond this, tick labels overlap into noise


def encoder_attentions(
    encoder: Encoder, input_ids, attention_mask=None
) -> list[np.ndarray]:
    """Attention weights of the first sequence: one (H, T, T) float array per layer.

    ``input_ids`` is (T,) or (B, T); rows of each array are queries, columns keys.
    """
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None, :]  # (1, T)
    mask = None
    if attention_mask is not None:
        mask = torch.as_tensor(attention_mask)
        if mask.dim() == 1:
            mask = mask[None, :]
    device = next(encoder.parameters()).device
    ids = ids.to(device)
    mask = None if mask is None else mask.to(device)
    was_training = encoder.training
    encoder.eval()  # dropout on attention weights would make the map random
    try:
        with torch.no_grad():
            out = encoder(ids, mask, output_attentions=True)
    finally:
        encoder.train(was_training)
    return [w[0].float().cpu().numpy() for w in out.attentions]  # N x (H, T, T)


def plot_attention(
    tokens: list[str],
    attentions: Sequence,
    path,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """Draw a grid of heatmaps (rows = layers, columns = heads) to a PNG and return its path.

    ``attentions``: per-layer arrays or tensors of shape (H, T, T) or (1, H, T, T), e.g. from
    ``encoder_attentions`` or ``EncoderOutput.attentions`` of a batch of one.
    """
    maps = _as_layer_arrays(attentions)  # N x (H, T, T)
    n_layers, (n_heads, T, _) = len(maps), maps[0].shape
    if len(tokens) != T:
        raise ValueError(f"got {len(tokens)} tokens but the attention maps cover {T} positions")
    layers = _check_indices("layer", layers, n_layers)
    heads = _check_indices("head", heads, n_heads)

    # A bare Figure on an Agg canvas: no pyplot, so the caller's backend and figures are untouched
    require("matplotlib", "drawing attention maps")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cell = max(1.6, min(4.0, 0.22 * T))  # inches per heatmap, grows with the sequence
    fig = Figure(
        figsize=(cell * len(heads) + 1.0, cell * len(layers) + 0.6), layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    labelled = T <= MAX_LABELLED_TOKENS
    # one colour scale for every panel so they compare; up to the largest weight shown, since
    # a fixed 0..1 scale turns the near-uniform maps of short or untrained inputs into one colour
    vmax = max(float(maps[layer][head].max()) for layer in layers for head in heads) or 1.0
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            image = ax.imshow(maps[layer][head], vmin=0.0, vmax=vmax, cmap="viridis")
            ax.set_title(f"layer {layer} · head {head}", fontsize=8)
            if labelled:
                ax.set_xticks(range(T), tokens, rotation=90, fontsize=6)
                ax.set_yticks(range(T), tokens, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("query", fontsize=7)
            if r == len(layers) - 1:
                ax.set_xlabel("key", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path


def _as_layer_arrays(attentions: Sequence) -> list[np.ndarray]:
    if attentions is None or len(attentions) == 0:
        raise ValueError("attentions is empty: expected one (H, T, T) array per layer")
    maps = []
    for i, a in enumerate(attentions):
        a = a.detach().float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]  # (1, H, T, T) -> (H, T, T)
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ValueError(
                f"attentions[{i}] has shape {a.shape}; expected (H, T, T) or (1, H, T, T)"
            )
        if maps and a.shape != maps[0].shape:
            raise ValueError(
                f"attentions[{i}] has shape {a.shape} but attentions[0] has {maps[0].shape}"
            )
        maps.append(a)
    return maps


def _check_indices(kind: str, chosen: Sequence[int] | None, available: int) -> list[int]:
    if chosen is None:
        return list(range(available))
    chosen = list(chosen)
    if not chosen:
        raise ValueError(f"no {kind}s selected")
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < available:
            raise ValueError(f"{kind} index {i!r} out of range: there are {available} {kind}s")
    return [int(i) for i in chosen]
