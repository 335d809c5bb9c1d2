"""Cross-encoder fine-tuning on sentence pairs: `seqenc train pairs`.

Two kinds of target, as sentence-transformers' CrossEncoder trains them:
- a score (regression): one output, BCE-with-logits against the score scaled to [0, 1]
  (STS-B's 0-5 with ``max_score=5``); dev metrics Spearman and Pearson of sigmoid(logit);
- a label (classification): one output per label, cross-entropy; dev accuracy and macro-F1.
The output directory is a transformers ``*ForSequenceClassification`` checkpoint
(seqenc.crossencoder), loadable by CrossEncoder, transformers and sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqenc.choices import PAIR_TARGETS, check_choice
from seqenc.crossencoder import CrossEncoder, _pad
from seqenc.io.errors import InputError
from seqenc.io.readers import detect_format

from . import distributed as D
from .config import TrainConfig
from .data import infer_labels, read_labelled, split_indices
from .metrics import classification_report
from .recipes import start_run
from .tasks import Batch, Task, _copy_weights, _sorted_batches
from .trainer import Trainer, TrainResult


@dataclass
class PairData:
    firsts: list[str]
    seconds: list[str]
    targets: list[str | None]  # as read; scores or labels (None: no target column)
    lines: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.firsts)

    def subset(self, indices: Sequence[int]) -> PairData:
        return PairData(*([x[i] for i in indices] for x in (self.firsts, self.seconds,
                                                           self.targets, self.lines)),
                        self.source)


def pair_columns(first: str | None, second: str | None, target: str | None, header: bool,
                 kind: str = "score") -> tuple[str, str, str]:
    """Command-line columns -> names (with a header: sentence1, sentence2 and ``kind``, i.e.
    score or label, by default) or 0-based indices (without one: 0, 1, 2)."""
    if header:
        return first or "sentence1", second or "sentence2", target or kind
    return first or "0", second or "1", target or "2"


def read_pairs(path: str, first: str, second: str, target: str, header: bool = True,
               fmt: str | None = None, require_targets: bool = True) -> PairData:
    """(first, second[, target]) rows from csv/tsv/jsonl/parquet; every problem names the
    file, line and field. Without ``require_targets`` a missing target column is allowed
    (targets are None: prediction input)."""
    if detect_format(path, fmt) == "txt":
        raise InputError("a .txt file holds one text per line; pairs need two columns (csv, "
                         "tsv, jsonl or parquet)", file=path)
    a, b = (read_labelled(path, column, target, header=header, fmt=fmt,
                          require_labels=require_targets) for column in (first, second))
    return PairData(a.texts, b.texts, [None if t is None else str(t) for t in a.labels],
                    a.lines, a.source)


def scores_of(data: PairData, column: str, max_score: float) -> np.ndarray:
    """Score strings -> floats in [0, 1] (divided by ``max_score``); bad ones name the line."""
    out = np.empty(len(data), dtype=np.float32)
    for i, (text, line) in enumerate(zip(data.targets, data.lines, strict=True)):
        try:
            value = float(text) / max_score
        except ValueError:
            raise InputError(f"score {text!r} is not a number", file=data.source, line=line,
                             field=column) from None
        if not 0.0 <= value <= 1.0:
            raise InputError(f"score {text} is outside [0, {max_score:g}] (use --max-score to "
                             "scale scores into [0, 1])", file=data.source, line=line,
                             field=column)
        out[i] = value
    return out


class PairTask(Task):
    """Regression (one output, scores in [0, 1]) or classification over ``labels``."""

    def __init__(self, model: CrossEncoder, train: PairData, train_y: np.ndarray,
                 dev: PairData | None, dev_y: np.ndarray | None, labels: list[str] | None,
                 eval_batch_size: int = 64, echo=print):
        self.cross = model
        self.model = model.model
        self.labels = labels
        self.regression = labels is None
        self.metric = "spearman" if self.regression else "accuracy"
        self.greater_is_better = True
        self.train = self._tokenize(train, echo)
        dtype = torch.float32 if self.regression else torch.long
        self.train_y = torch.as_tensor(train_y, dtype=dtype)
        self.train_lengths = np.array([len(x) for x in self.train[0]], dtype=np.int64)
        self.train_groups = reversal_groups(train)
        self.dev = self._tokenize(dev, echo) if dev is not None else ([], [])
        self.dev_y = dev_y if dev_y is not None else np.zeros(0)
        self.n_dev = len(self.dev[0])
        self.eval_batch_size = eval_batch_size

    def _tokenize(self, data: PairData, echo) -> tuple[list[list[int]], list[list[int]]]:
        tokenized = self.cross.tokenizer.encode(list(zip(data.firsts, data.seconds,
                                                         strict=True)))
        if tokenized.cut:
            sides = {s: sum(1 for v in tokenized.cut.values() if v == s)
                     for s in ("first", "second", "both")}
            echo(f"{data.source}: {len(tokenized.cut)} of {len(data)} pairs cut at "
                 f"{self.cross.max_length} tokens (first text only: {sides['first']}, second "
                 f"only: {sides['second']}, both: {sides['both']})")
        return tokenized.ids, tokenized.type_ids

    def _batch(self, ids, types, indices) -> Batch:
        input_ids, keep, type_ids = _pad([ids[i] for i in indices], [types[i] for i in indices],
                                         self.cross.tokenizer.pad_id)
        return {"input_ids": input_ids, "attention_mask": keep, "token_type_ids": type_ids}

    def collate(self, indices: np.ndarray, key: int) -> Batch:
        batch = self._batch(*self.train, indices)
        batch["labels"] = self.train_y[torch.as_tensor(indices)]
        return batch

    def units(self, batch: Batch) -> int:
        return len(batch["labels"])

    def _loss(self, logits: Tensor, gold: Tensor) -> Tensor:
        if self.regression:
            return F.binary_cross_entropy_with_logits(logits[:, 0], gold, reduction="sum")
        return F.cross_entropy(logits, gold, reduction="sum")

    def loss_sum(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return self._loss(logits.float(), batch["labels"])

    def eval_batches(self) -> list[np.ndarray]:
        lengths = np.array([len(x) for x in self.dev[0]], dtype=np.int64)
        return _sorted_batches(lengths, self.eval_batch_size)

    def eval_stats(self, batch_number: int, indices: np.ndarray, device: torch.device) -> Any:
        batch = {k: v.to(device) for k, v in self._batch(*self.dev, indices).items()}
        logits = self.model(**batch).float()
        gold = torch.as_tensor(self.dev_y[indices], device=device)
        loss = self._loss(logits, gold.float() if self.regression else gold.long()).item()
        predicted = logits[:, 0].sigmoid() if self.regression else logits.argmax(-1)
        return indices.tolist(), predicted.cpu().tolist(), loss

    def combine(self, stats: Sequence[Any]) -> dict[str, float]:
        indices = [i for s in stats for i in s[0]]
        predicted = np.empty(self.n_dev, dtype=np.float64)
        predicted[indices] = [p for s in stats for p in s[1]]
        loss = sum(s[2] for s in stats) / self.n_dev
        if self.regression:
            return {"loss": loss, **correlations(predicted, self.dev_y)}
        report = classification_report(self.dev_y, predicted.astype(np.int64), self.labels)
        return {"loss": loss, "accuracy": report.accuracy, "macro_f1": report.macro_f1}

    def save(self, directory: Path) -> None:
        self.cross.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        _copy_weights(CrossEncoder.from_pretrained(directory).model, self.model)


def reversal_groups(data: PairData) -> np.ndarray:
    """One id per unordered pair: (a, b) and (b, a) (``--symmetric``'s reversals, or both
    orders in the data) get the same id, so that they never share an optimizer step
    (plan_epoch: not one batch, nor the micro-batches of one step with --grad-accum)."""
    ids: dict[tuple[str, str], int] = {}
    return np.array([ids.setdefault((a, b) if a <= b else (b, a), len(ids))
                     for a, b in zip(data.firsts, data.seconds, strict=True)], dtype=np.int64)


def correlations(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation (scipy's definitions, ties ranked by their mean)."""
    from scipy.stats import pearsonr, spearmanr

    return {"spearman": float(spearmanr(predicted, gold)[0]),
            "pearson": float(pearsonr(predicted, gold)[0])}


@dataclass
class PairsJob:
    train: str
    output: str
    dev: str | None = None
    dev_fraction: float = 0.0
    split_seed: int = 0
    first_column: str | None = None  # default "sentence1" (or 0 without a header)
    second_column: str | None = None  # default "sentence2" (or 1)
    target_column: str | None = None  # default "score"/"label" (or 2)
    header: bool = True
    fmt: str | None = None  # csv | tsv | jsonl | parquet; default: from the file name
    target: str = "score"  # score (regression) | label (classification)
    max_score: float = 1.0  # scores are divided by this into [0, 1]
    init: str | None = "default"
    max_length: int | None = None  # tokens per pair; default 256 (capped by the model)
    symmetric: bool = False  # also train on (second, first): for symmetric tasks like STS
    resume: bool = False

    def columns(self) -> tuple[str, str, str]:
        return pair_columns(self.first_column, self.second_column, self.target_column,
                            self.header, self.target)


def is_cross_encoder(name: str | None) -> bool:
    """Whether ``name`` is a *ForSequenceClassification directory (it has a head to keep)."""
    from seqenc.checkpoint import read_json
    from seqenc.resolve import resolve_model_path

    config = read_json(resolve_model_path(name) / "config.json")
    return any(str(a).endswith("ForSequenceClassification")
               for a in config.get("architectures") or [])


def _read(job: PairsJob) -> tuple[PairData, PairData | None]:
    first, second, target = job.columns()
    train = read_pairs(job.train, first, second, target, job.header, job.fmt)
    dev = None
    if job.dev is not None:
        dev = read_pairs(job.dev, first, second, target, job.header, job.fmt)
    elif job.dev_fraction > 0:
        keep, held = split_indices(len(train), job.dev_fraction, job.split_seed)
        train, dev = train.subset(keep), train.subset(held)
    return train, dev


def _targets(job: PairsJob, train: PairData, dev: PairData | None):
    column = job.columns()[2]
    if job.target == "score":
        if not job.max_score > 0:
            raise ValueError(f"max_score must be > 0, got {job.max_score}")
        return None, scores_of(train, column, job.max_score), \
            scores_of(dev, column, job.max_score) if dev is not None else None
    from .data import LabelledTexts, encode_labels

    def as_labelled(d: PairData) -> LabelledTexts:
        return LabelledTexts(d.firsts, d.targets, d.lines, d.source, column)

    labels = infer_labels(as_labelled(train))
    dev_y = encode_labels(as_labelled(dev), labels) if dev is not None else None
    return labels, encode_labels(as_labelled(train), labels), dev_y


def train_pairs(job: PairsJob, cfg: TrainConfig, ctx: D.DistContext | None = None, echo=None,
                progress: bool | None = None, stop_after: int | None = None) -> TrainResult:
    """Read pairs, build (or resume) the cross-encoder, train, export."""
    check_choice("target", job.target, PAIR_TARGETS)
    ctx, say = start_run(job.output, job.resume, cfg, ctx, echo)
    train, dev = _read(job)
    labels, train_y, dev_y = _targets(job, train, dev)
    if job.symmetric:  # each pair both ways round, as sentence-transformers' STS-B example
        train = PairData(train.firsts + train.seconds, train.seconds + train.firsts,
                         train.targets * 2, train.lines * 2, train.source)
        train_y = np.concatenate([train_y, train_y])
    n_labels = 1 if labels is None else len(labels)
    if job.resume:
        cross = CrossEncoder.from_pretrained(Path(job.output) / "checkpoints" / "last")
    elif is_cross_encoder(job.init):  # fine-tune a cross-encoder further, its head included
        cross = CrossEncoder.from_pretrained(job.init, max_length=job.max_length or 256)
    else:
        torch.manual_seed(cfg.seed)
        cross = CrossEncoder.from_encoder(job.init, n_labels, max_length=job.max_length or 256)
        if labels is not None:
            cross.config["id2label"] = dict(enumerate(labels))
            cross.config["label2id"] = {label: i for i, label in enumerate(labels)}
    known = cross.config.get("id2label") or {}
    if labels is not None and (job.resume or is_cross_encoder(job.init)) \
            and [known.get(str(i), known.get(i)) for i in range(len(labels))] != labels:
        raise InputError(f"the data has labels {labels}; the checkpoint has "
                         f"{list(known.values())}", file=job.train)
    if cross.num_labels != n_labels:
        raise InputError(f"the checkpoint has {cross.num_labels} outputs, the data needs "
                         f"{n_labels}", file=job.train)
    task = PairTask(cross, train, train_y, dev, dev_y, labels, echo=say)
    info = {"task": "pairs", "job": asdict(job), "labels": labels, "n_train": len(train),
            "n_dev": len(dev) if dev is not None else 0}
    trainer = Trainer(task, cfg, job.output, ctx, run_info=info, echo=echo, progress=progress)
    return trainer.train(resume=job.resume, stop_after=stop_after)
