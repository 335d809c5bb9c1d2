"""The ``seqenc`` command line: the group every command joins, the one model loader they
share, and the small model commands similarity, info and attention. The others live beside
their code: encode (encode_cli.py), train/predict/evaluate, serve, bench, fetch, rerank.

Only click and the standard library are imported at start-up; numpy, torch and the model are
imported inside the commands, so ``seqenc --help`` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from seqenc.bench_cli import bench_command  # click only: the harness loads when it runs
from seqenc.encode_cli import device_option, encode  # click only (device_option: re-exported)
from seqenc.exits import EXIT_CODES, ModelLoadError, output_exit_codes
from seqenc.extras import require
from seqenc.fetch import fetch_command  # stdlib and click only
from seqenc.search_cli import register as register_search  # click only: stays lazy
from seqenc.server.cli import serve_command  # click only: the server loads when it runs
from seqenc.train.cli import register as register_training  # click only: stays lazy

__all__ = ["device_option", "encode", "load_model", "main"]


def load_model(name: str | None, device: str = "cpu") -> Any:
    """The CLI's only way to a model; tests replace it with a fake of the same interface."""
    try:
        from seqenc.allocator import tune_memory
        from seqenc.model import SentenceEncoder

        tune_memory()  # every CLI command that loads a model runs batch after batch
        return SentenceEncoder.from_pretrained(name, device=device)
    except Exception as e:
        raise ModelLoadError(f"cannot load model {name or 'default'!r}: {e}") from e


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="seqenc")
def main() -> None:
    """seqenc: encode sentences into vectors with a Transformer sentence encoder."""


# -- similarity ------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("texts", nargs=-1, required=True)
@click.option("--model", "model_name", metavar="NAME|PATH", help="Model name or directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@output_exit_codes
def similarity(texts: tuple[str, ...], model_name: str | None, as_json: bool) -> None:
    """Print the cosine similarity of every pair of TEXTS."""
    import numpy as np

    if len(texts) < 2:
        raise click.UsageError("give at least two texts to compare")
    model = load_model(model_name)
    vectors = np.asarray(model.encode(list(texts), normalize=True), dtype=np.float64)
    matrix = np.clip(vectors @ vectors.T, -1.0, 1.0)
    if as_json:
        click.echo(json.dumps({"texts": list(texts), "similarity": matrix.round(6).tolist()}))
        return
    labels = [f"[{i}]" for i in range(1, len(texts) + 1)]
    width = max(7, *(len(label) for label in labels))
    click.echo(" " * width + "".join(label.rjust(width + 1) for label in labels))
    for label, row in zip(labels, matrix, strict=True):
        click.echo(label.ljust(width) + "".join(f"{v:.4f}".rjust(width + 1) for v in row))
    click.echo()
    for label, text in zip(labels, texts, strict=True):
        click.echo(f"{label} {text}")


# -- info ------------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("model_name", metavar="[MODEL]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@output_exit_codes
def info(model_name: str | None, as_json: bool) -> None:
    """Describe MODEL (default: the packaged all-MiniLM-L6-v2, or $SEQENC_MODEL)."""
    facts = dict(load_model(model_name).describe())
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        click.echo(f"{key.replace('_', ' '):<{width}}  {shown}")


# -- attention -------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES)
@click.argument("text")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="PNG file to write (missing directories are created).",
)
@click.option("--model", "model_name", metavar="NAME|PATH", help="Model name or directory.")
@click.option("--layer", "layers", type=int, multiple=True, help="Layer to draw (repeatable).")
@click.option("--head", "heads", type=int, multiple=True, help="Head to draw (repeatable).")
@click.option("--title", help="Figure title (default: the text).")
@output_exit_codes
def attention(
    text: str,
    output: str,
    model_name: str | None,
    layers: tuple[int, ...],
    heads: tuple[int, ...],
    title: str | None,
) -> None:
    """Draw the attention weights of TEXT, per layer and head, to a PNG heatmap grid.

    Layers and heads count from 0; by default all are drawn.
    """
    out = Path(output)
    if out.suffix.lower() != ".png":
        raise click.BadParameter("the attention map is a PNG: name it *.png", param_hint="-o")
    require("matplotlib", "seqenc attention")  # before the slow model load
    model = load_model(model_name)
    from seqenc.atomic import atomic_path
    from seqenc.viz import encoder_attentions, plot_attention

    batch = model.tokenize([text])
    tokens = model.tokenizer.tokens(text)
    maps = encoder_attentions(model.encoder, batch.input_ids, batch.attention_mask)
    n_layers, n_heads = len(maps), maps[0].shape[0]
    for name, chosen, available in (("--layer", layers, n_layers), ("--head", heads, n_heads)):
        for i in chosen:
            if not 0 <= i < available:
                raise click.BadParameter(
                    f"{i} is out of range: the model has {available} (0..{available - 1})",
                    param_hint=name,
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        plot_attention(
            tokens,
            maps,
            tmp,
            layers=list(layers) or None,
            heads=list(heads) or None,
            title=title if title is not None else text,
        )
    click.echo(
        f"wrote attention map ({len(layers) or n_layers} layers x {len(heads) or n_heads} heads, "
        f"{len(tokens)} tokens) to {out}",
        err=True,
    )


# encode: defined in seqenc/encode_cli.py
main.add_command(encode, "encode")
# train classify|mlm, predict, evaluate: defined in seqenc/train/cli.py
register_training(main)
# rerank (cross-encoders): defined in seqenc/search_cli.py
register_search(main)

# serve: defined in seqenc/server/cli.py; bench: in seqenc/bench_cli.py
main.add_command(serve_command, "serve")
main.add_command(bench_command, "bench")
main.add_command(fetch_command, "fetch")


if __name__ == "__main__":  # pragma: no cover
    main()
