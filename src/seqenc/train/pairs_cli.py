"""`seqenc train pairs`: fine-tune a cross-encoder on sentence pairs (see train/pairs.py)."""

from __future__ import annotations

import click

from seqenc.choices import PAIR_TARGETS, TABLE_FORMATS

from .cli import _dev_options, _errors, _run, _train_config, _training_options, train_group


@train_group.command("pairs")
@click.option("--train", "train_file", required=True, type=click.Path(dir_okay=False),
              help="Training pairs: csv, tsv, jsonl or parquet.")
@_dev_options("Dev pairs: evaluated, picks the best checkpoint, early stopping.", 0.0,
              "--train as dev")
@click.option("--target", type=click.Choice(PAIR_TARGETS), default="score",
              show_default=True,
              help="score: regression on a number in [0, 1] (after --max-score); label: "
                   "classification over the labels found in --train.")
@click.option("--max-score", type=float, default=1.0, show_default=True,
              help="Divide scores by this (STS-B's 0-5 scores: 5).")
@click.option("--first-column", default=None,
              help="First text [default: sentence1; 0 with --no-header].")
@click.option("--second-column", default=None,
              help="Second text [default: sentence2; 1 with --no-header].")
@click.option("--target-column", default=None,
              help="Score or label [default: score or label; 2 with --no-header].")
@click.option("--no-header", is_flag=True,
              help="csv/tsv without a header row; columns are 0-based indices.")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS),
              default=None, help="Input format [default: from the file name].")
@click.option("--from", "init", default="default", show_default=True,
              help="Pretrained encoder to fine-tune with a new head ('default' = the packaged "
                   "all-MiniLM-L6-v2), or a cross-encoder to train further, head included.")
@click.option("--max-length", type=int, default=None,
              help="Tokens per pair, longest side cut first [default: 256].")
@click.option("--symmetric", is_flag=True,
              help="Also train on every pair reversed (second, first): for symmetric tasks "
                   "such as STS, where the order carries no meaning.")
@_training_options({"epochs": 1, "lr": 2e-5})
@_errors
def pairs(train_file, dev_file, dev_fraction, split_seed, target, max_score, first_column,
          second_column, target_column, no_header, fmt, init, max_length, symmetric, output,
          resume, progress, **kw) -> None:
    """Fine-tune a cross-encoder (reranker) on sentence pairs with a score or a label.

    The output directory is a transformers *ForSequenceClassification checkpoint:
    `seqenc rerank --model DIR`, sentence-transformers' CrossEncoder and transformers'
    AutoModelForSequenceClassification all load it. STS-B, say:

      seqenc train pairs --train sts-train.csv --dev sts-dev.csv --format tsv --no-header
      --first-column 5 --second-column 6 --target-column 4 --max-score 5 -o out/sts-ce
    """
    from .pairs import PairsJob, train_pairs

    cfg = _train_config(kw)
    job = PairsJob(train=train_file, output=output, dev=dev_file, dev_fraction=dev_fraction,
                   split_seed=split_seed, first_column=first_column,
                   second_column=second_column, target_column=target_column,
                   header=not no_header, fmt=fmt, target=target, max_score=max_score,
                   init=init, max_length=max_length, symmetric=symmetric, resume=resume)
    _run(train_pairs, job, cfg, progress)
