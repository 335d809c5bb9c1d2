"""Command line: ``seqenc train classify|mlm``, ``seqenc predict``, ``seqenc evaluate``.

Only click and the standard library load at import time (``seqenc --help`` stays instant);
torch and the training code are imported inside the commands. The same commands run under
torchrun, one process per device: ``torchrun --nproc_per_node N -m seqenc.train classify ...``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from seqenc.choices import DEVICES, DTYPES, METRICS, TABLE_FORMATS
from seqenc.exits import EXIT_INPUT, EXIT_MODEL, EXIT_USAGE, exit_codes, sigterm_as_interrupt


def _classify(e: Exception) -> tuple[int, str] | None:
    """Bad data -> exit 3, unloadable model -> 4, bad settings -> 2 (usage); others raise."""
    from seqenc.checkpoint import CheckpointError
    from seqenc.io.errors import InputError
    from seqenc.resolve import ModelNotFoundError

    from .config import ConfigError

    if isinstance(e, (InputError, ConfigError)):
        return EXIT_INPUT, str(e)
    if isinstance(e, (CheckpointError, ModelNotFoundError)):
        return EXIT_MODEL, str(e)
    if isinstance(e, (FileExistsError, FileNotFoundError, ValueError)):
        return EXIT_USAGE, str(e)
    return None


_errors = exit_codes(_classify)


def _stacked(options: list[Callable]) -> Callable:
    """One decorator applying ``options`` as if listed top to bottom above the function."""
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _dev_options(dev_help: str, fraction: float, share_of: str) -> Callable:
    """--dev, or --dev-fraction (with --split-seed) of the training data: every command's."""
    options = [
        click.option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
                     help=dev_help),
        click.option("--dev-fraction", type=float, default=fraction, show_default=True,
                     help=f"Without --dev: hold out this share of {share_of}."),
        click.option("--split-seed", type=int, default=0, show_default=True,
                     help="Seed of the --dev-fraction split (independent of --seed)."),
    ]
    return _stacked(options)


def _training_options(defaults: dict[str, Any]) -> Callable:
    """The optimisation options every training command shares (-> TrainConfig)."""
    options = [
        click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
                     help="Directory for the model, checkpoints, metrics.jsonl and the plot."),
        click.option("--epochs", type=int, default=defaults["epochs"], show_default=True),
        click.option("--max-steps", type=int, default=None,
                     help="Optimizer steps to take (overrides --epochs)."),
        click.option("--batch-size", type=int, default=32, show_default=True,
                     help="Examples per forward pass, over all processes."),
        click.option("--grad-accum", type=int, default=1, show_default=True,
                     help="Forward passes per optimizer step."),
        click.option("--lr", type=float, default=defaults["lr"], show_default=True,
                     help="Peak learning rate (AdamW)."),
        click.option("--head-lr", type=float, default=None,
                     help="Peak learning rate of the task head (classifier, pooler, MLM "
                          "head) [default: --lr]."),
        click.option("--weight-decay", type=float, default=0.01, show_default=True),
        click.option("--warmup-ratio", type=float, default=0.06, show_default=True,
                     help="Share of the steps spent warming the learning rate up from 0."),
        click.option("--max-grad-norm", type=float, default=1.0, show_default=True,
                     help="Clip the gradient norm to this; 0 disables clipping."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--dtype", type=click.Choice(DTYPES), default="float32",
                     show_default=True, help="bfloat16 = autocast; weights stay float32."),
        click.option("--patience", type=int, default=None,
                     help="Stop after this many evaluations without a better dev metric."),
        click.option("--eval-every", type=int, default=None,
                     help="Evaluate every N steps (default: every epoch)."),
        click.option("--save-every", type=int, default=None,
                     help="Checkpoint every N steps (default: at every evaluation)."),
        click.option("--log-every", type=int, default=10, show_default=True),
        click.option("--no-length-grouping", is_flag=True,
                     help="Batch in random order, not grouped by length (more padding)."),
        click.option("--device", type=click.Choice(DEVICES), default="cpu",
                     show_default=True),
        click.option("--resume", is_flag=True,
                     help="Continue the run in --output from its last checkpoint."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar (default: only when stderr is a terminal)."),
    ]
    return _stacked(options)


def _train_config(kw: dict[str, Any]):
    from .config import ConfigError, TrainConfig

    try:
        return TrainConfig(
            epochs=kw.pop("epochs"), max_steps=kw.pop("max_steps"),
            batch_size=kw.pop("batch_size"), grad_accum=kw.pop("grad_accum"), lr=kw.pop("lr"),
            head_lr=kw.pop("head_lr"),
            weight_decay=kw.pop("weight_decay"), warmup_ratio=kw.pop("warmup_ratio"),
            max_grad_norm=kw.pop("max_grad_norm"), seed=kw.pop("seed"), dtype=kw.pop("dtype"),
            patience=kw.pop("patience"), eval_every=kw.pop("eval_every"),
            save_every=kw.pop("save_every"), log_every=kw.pop("log_every"),
            group_by_length=not kw.pop("no_length_grouping"), device=kw.pop("device"),
        )
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


def _run(train: Callable, job: Any, cfg: Any, progress: bool | None) -> None:
    """Set up the process group (under torchrun), train, report, tear down."""
    from seqenc.extras import require
    from seqenc.threads import set_threads, torchrun_share

    from . import distributed as D

    require("matplotlib", "training (it draws learning_curves.png)")  # now, not after hours
    set_threads(torchrun_share())  # several processes on one machine share its cores
    ctx = D.setup(cfg.device)
    try:
        echo = (lambda m: click.echo(m, err=True)) if ctx.is_main else (lambda m: None)
        with sigterm_as_interrupt():  # `timeout`, schedulers: checkpoint, then stop
            result = train(job, cfg, ctx, echo=echo, progress=progress)
    finally:
        D.teardown(ctx)
    if ctx.is_main:
        best = result.best_metrics or result.last_metrics
        if best:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in best.items()
                              if isinstance(v, float) and k not in ("elapsed_s", "epoch"))
            click.echo(f"best dev (step {result.best_step}): {shown}", err=True)
        click.echo(str(result.output))


@click.group("train", context_settings={"help_option_names": ["-h", "--help"]})
def train_group() -> None:
    """Train a classifier, or pretrain an encoder with masked-LM (one process or torchrun)."""


@train_group.command("classify")
@click.option("--train", "train_file", required=True, type=click.Path(dir_okay=False),
              help="Labelled training data: csv, tsv, jsonl or parquet.")
@_dev_options("Labelled dev data: evaluated, picks the best checkpoint, early stopping.", 0.0,
              "--train as dev")
@click.option("--text-column", default=None,
              help="Text column [default: sentence; 0 with --no-header].")
@click.option("--label-column", default=None,
              help="Label column [default: label; 1 with --no-header].")
@click.option("--no-header", is_flag=True,
              help="csv/tsv without a header row; columns are 0-based indices.")
@click.option("--from", "init", default="default", show_default=True,
              help="Pretrained sentence-encoder directory to fine-tune ('default' = the "
                   "packaged all-MiniLM-L6-v2).")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="sizes.json of EncoderConfig fields: train a new encoder from scratch.")
@click.option("--tokenizer", default="default", show_default=True,
              help="With --config: 'default' (the default model's tokenizer.json), 'train' "
                   "(a WordPiece one learnt from --train) or a tokenizer.json path.")
@click.option("--vocab-size", type=int, default=8000, show_default=True,
              help="Vocabulary of a --tokenizer train WordPiece tokenizer.")
@click.option("--max-length", type=int, default=None,
              help="Tokens per text; longer texts are cut [default: 128].")
@click.option("--metric", type=click.Choice(METRICS), default="accuracy",
              show_default=True, help="Dev metric for the best checkpoint and early stopping.")
@_training_options({"epochs": 3, "lr": 5e-5})
@_errors
def classify(train_file, dev_file, dev_fraction, split_seed, text_column, label_column,
             no_header, init, config, tokenizer, vocab_size, max_length, metric, output, resume,
             progress, **kw) -> None:
    """Fine-tune (or train from scratch) an encoder with a classification head.

    The output directory is a sentence-encoder directory (`seqenc encode --model DIR` reads
    it) plus classifier.safetensors and labels.json, with checkpoints/, metrics.jsonl and
    learning_curves.png beside them.
    """
    from .recipes import ClassifyJob, train_classifier

    cfg = _train_config(kw)
    job = ClassifyJob(train=train_file, output=output, dev=dev_file, dev_fraction=dev_fraction,
                      split_seed=split_seed,
                      text_column=text_column, label_column=label_column, header=not no_header,
                      init=init, config=config, tokenizer=tokenizer, vocab_size=vocab_size,
                      max_length=max_length, metric=metric, resume=resume)
    _run(train_classifier, job, cfg, progress)


@train_group.command("mlm")
@click.option("--corpus", required=True, type=click.Path(dir_okay=False),
              help="Plain text, one example per line.")
@_dev_options("Held-out plain text for masked accuracy and perplexity.", 0.05,
              "the corpus lines")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="sizes.json of EncoderConfig fields [default: 4 layers, d_model 256].")
@click.option("--tokenizer", default="train", show_default=True,
              help="'train' (WordPiece learnt from the corpus) or a tokenizer.json path.")
@click.option("--vocab-size", type=int, default=8000, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True)
@click.option("--mask-prob", type=float, default=0.15, show_default=True)
@_training_options({"epochs": 3, "lr": 5e-4})
@_errors
def mlm(corpus, dev_file, dev_fraction, split_seed, config, tokenizer, vocab_size, max_length,
        mask_prob, output, resume, progress, **kw) -> None:
    """Pretrain an encoder from scratch with masked-language modelling (BERT's 80/10/10).

    The result is a sentence-encoder directory (mean pooling) plus mlm_head.safetensors.
    """
    from .recipes import MlmJob, train_mlm

    cfg = _train_config(kw)
    job = MlmJob(corpus=corpus, output=output, dev=dev_file, dev_fraction=dev_fraction,
                 split_seed=split_seed,
                 config=config, tokenizer=tokenizer, vocab_size=vocab_size,
                 max_length=max_length, mask_prob=mask_prob, resume=resume)
    _run(train_mlm, job, cfg, progress)


def _data_options(f: Callable) -> Callable:
    for option in reversed([
        click.option("--text-column", default=None,
                     help="Text column [default: sentence; 0 with --no-header]."),
        click.option("--first-column", default=None,
                     help="Cross-encoders: first text of a pair [default: sentence1; 0 with "
                          "--no-header]."),
        click.option("--second-column", default=None,
                     help="Cross-encoders: second text [default: sentence2; 1 with "
                          "--no-header]."),
        click.option("--no-header", is_flag=True, help="csv/tsv without a header row."),
        click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS),
                     default=None, help="Input format [default: from the file name]."),
        click.option("--batch-size", type=int, default=64, show_default=True),
    ]):
        f = option(f)
    return f


def _load_classifier(model_dir: str):
    from seqenc.checkpoint import CheckpointError

    from .classifier import TextClassifier

    try:
        return TextClassifier.from_pretrained(model_dir)
    except FileNotFoundError as e:
        raise CheckpointError(f"cannot load classifier {model_dir!r}: {e}") from None


def _pair_model(model_dir: str, first: str | None, second: str | None):
    """The cross-encoder in ``model_dir``, or None for a `seqenc train classify` directory."""
    from .pairs_eval import is_pair_model

    if is_pair_model(model_dir):
        from seqenc.crossencoder import CrossEncoder

        return CrossEncoder.from_pretrained(model_dir)
    if first is not None or second is not None:
        raise click.UsageError(f"--first-column/--second-column are for cross-encoders; "
                               f"{model_dir} is not one (no *ForSequenceClassification in its "
                               "config.json)")
    return None


def _read_pairs(cross, file: str, first: str | None, second: str | None, target: str | None,
                no_header: bool, fmt: str | None, require_targets: bool):
    """(PairData, target column) of FILE, with `seqenc train pairs`' default columns for a
    one-output (score) or several-output (label) cross-encoder."""
    from .pairs import pair_columns, read_pairs

    kind = "score" if cross.num_labels == 1 else "label"
    first, second, target = pair_columns(first, second, target, not no_header, kind)
    return read_pairs(file, first, second, target, not no_header, fmt,
                      require_targets=require_targets), target


@click.command("predict")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write .jsonl or .csv (atomically); default: JSON lines on stdout.")
@_data_options
@_errors
def predict_command(model_dir, file, output, text_column, first_column, second_column,
                    no_header, fmt, batch_size) -> None:
    """Predict labels and class probabilities for FILE (txt, csv, tsv, jsonl or parquet).

    Each output row has the input's line (or row) number, the label, and one probability per
    label. With a cross-encoder (`seqenc train pairs`, or any *ForSequenceClassification
    directory) FILE holds text pairs, and a one-output model gives each pair a score.
    """
    from .data import read_labelled
    from .predict import write_predictions

    if output is not None and Path(output).suffix.lower() not in (".jsonl", ".csv"):
        raise click.BadParameter("must end in .jsonl or .csv", param_hint="--output")
    cross = _pair_model(model_dir, first_column, second_column)
    if cross is not None:
        from .pairs_eval import predict_pairs

        data, _ = _read_pairs(cross, file, first_column, second_column, None, no_header, fmt,
                              require_targets=False)
        predict_pairs(cross, data, output, batch_size)
    else:
        data = read_labelled(file, text_column, None, header=not no_header, fmt=fmt,
                             require_labels=False)
        classifier = _load_classifier(model_dir)
        probs = classifier.predict_proba(data.texts, batch_size)
        write_predictions(output, data.lines, classifier.labels, probs)
    if output is not None:
        click.echo(f"{len(data)} predictions written to {output}", err=True)


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--label-column", "--target-column", "label_column", default=None,
              help="Label (or, for a one-output cross-encoder, score) column [default: label "
                   "or score; 1 with --no-header, 2 for pairs].")
@click.option("--max-score", type=float, default=None,
              help="Cross-encoders: divide gold scores by this (STS-B: 5); adds the MSE.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_data_options
@_errors
def evaluate_command(model_dir, file, label_column, max_score, as_json, text_column,
                     first_column, second_column, no_header, fmt, batch_size) -> None:
    """Accuracy, macro-F1 and per-class precision/recall/F1 of a classifier on FILE.

    With a cross-encoder, FILE holds text pairs: Spearman and Pearson correlation of a
    one-output model's scores with the gold scores, or the classification report of a
    model with several labels.
    """
    import json

    cross = _pair_model(model_dir, first_column, second_column)
    if cross is not None:
        from .pairs_eval import evaluate_pairs, format_report

        data, target = _read_pairs(cross, file, first_column, second_column, label_column,
                                   no_header, fmt, require_targets=True)
        result = evaluate_pairs(cross, data, target, max_score, batch_size)
        click.echo(json.dumps(result, indent=2) if as_json else format_report(result))
        return
    from .data import encode_labels, read_labelled
    from .metrics import classification_report

    data = read_labelled(file, text_column, label_column, header=not no_header, fmt=fmt)
    classifier = _load_classifier(model_dir)
    gold = encode_labels(data, classifier.labels)
    predicted = classifier.predict_proba(data.texts, batch_size).argmax(axis=1)
    report = classification_report(gold, predicted, classifier.labels)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


def register(group: click.Group) -> None:
    """Add ``train``, ``predict`` and ``evaluate`` to the ``seqenc`` group."""
    group.add_command(train_group)
    group.add_command(predict_command)
    group.add_command(evaluate_command)


# `train pairs` (cross-encoders) lives in its own module and joins the group on import.
from . import pairs_cli  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    train_group(prog_name="python -m seqenc.train.cli")
    sys.exit(0)
