"""What the trainer needs to know about a task: how to batch, score, evaluate and save it.

The trainer sees only ``Task``. Batches are built for the *global* batch (every process builds
the same one, then keeps its own rows), so data order and masking do not depend on the number
of processes. Losses are sums; the trainer divides by the global count of ``units`` (examples,
or masked tokens) in the optimizer step, which makes 1 process and N processes, and one
large batch and several accumulated small ones, give the same gradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed as D
from .classifier import TextClassifier
from .metrics import classification_report
from .mlm import IGNORE, Masker, TextMaskedLM

Batch = dict[str, Tensor]
_MIX = 1_000_003  # a prime to combine seed, epoch and batch number into one generator seed


def batch_key(*parts: int) -> int:
    key = 0
    for part in parts:
        key = (key * _MIX + int(part)) % (2**62)
    return key


class Task(ABC):
    metric: str  # the dev metric that picks the best checkpoint and drives early stopping
    greater_is_better: bool
    model: nn.Module  # the module trained (not wrapped in DDP)
    train_lengths: np.ndarray  # token count of each training example, for batching
    train_groups: np.ndarray | None = None  # examples with one id never share a step
    n_dev: int

    @abstractmethod
    def collate(self, indices: np.ndarray, key: int) -> Batch:
        """The global batch of these training examples (CPU tensors, rows = examples)."""

    @abstractmethod
    def units(self, batch: Batch) -> int:
        """How many terms the batch adds to the loss (examples, masked tokens)."""

    @abstractmethod
    def loss_sum(self, model: nn.Module, batch: Batch) -> Tensor:
        """Summed (not averaged) loss of the batch through ``model`` (maybe DDP-wrapped)."""

    @abstractmethod
    def eval_batches(self) -> list[np.ndarray]:
        """The dev set cut into batches, in a fixed order."""

    @abstractmethod
    def eval_stats(self, batch_number: int, indices: np.ndarray, device: torch.device) -> Any:
        """Partial statistics of one dev batch (picklable: gathered across processes)."""

    @abstractmethod
    def combine(self, stats: Sequence[Any]) -> dict[str, float]:
        """Dev metrics from the statistics of every dev batch."""

    @torch.no_grad()
    def evaluate(self, device: torch.device, ctx: D.DistContext) -> dict[str, float]:
        """Dev metrics (``model`` in eval mode for the call); the dev batches are shared out
        over the processes and their statistics gathered."""
        was_training = self.model.training
        self.model.eval()
        try:
            mine = [self.eval_stats(n, idx, device) for n, idx in enumerate(self.eval_batches())
                    if n % ctx.world_size == ctx.rank]
            return self.combine([s for part in D.all_gather_objects(mine, ctx) for s in part])
        finally:
            self.model.train(was_training)

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the model in its loadable layout."""

    @abstractmethod
    def load(self, directory: Path) -> None:
        """Load weights written by ``save`` into ``self.model``, in place."""


def trim(batch: Batch) -> Batch:
    """Drop trailing columns that are padding in every row (a shard's rows may be shorter)."""
    keep = batch["attention_mask"]
    if keep.numel() == 0:
        return batch
    T = int(keep.sum(dim=1).max())
    return {k: (v[:, :T] if v.dim() == 2 else v) for k, v in batch.items()}


def _sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(-lengths, kind="stable")
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


class ClassificationTask(Task):
    metric = "accuracy"
    greater_is_better = True

    def __init__(self, classifier: TextClassifier, train_ids: list[list[int]],
                 train_labels: np.ndarray, dev_ids: list[list[int]] | None = None,
                 dev_labels: np.ndarray | None = None, eval_batch_size: int = 64,
                 metric: str = "accuracy"):
        if metric not in ("accuracy", "macro_f1"):
            raise ValueError(f"metric must be accuracy or macro_f1, got {metric!r}")
        self.classifier = classifier
        self.model = classifier.model
        self.metric = metric
        self.train_ids = train_ids
        self.train_labels = torch.as_tensor(train_labels, dtype=torch.long)
        self.train_lengths = np.array([len(x) for x in train_ids], dtype=np.int64)
        self.dev_ids = dev_ids or []
        self.dev_labels = np.asarray(dev_labels if dev_labels is not None else [], np.int64)
        self.n_dev = len(self.dev_ids)
        self.eval_batch_size = eval_batch_size

    def collate(self, indices: np.ndarray, key: int) -> Batch:
        padded = self.classifier.tokenizer.pad([self.train_ids[i] for i in indices])
        return {"input_ids": padded.input_ids, "attention_mask": padded.attention_mask,
                "labels": self.train_labels[torch.as_tensor(indices)]}

    def units(self, batch: Batch) -> int:
        return len(batch["labels"])

    def loss_sum(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"])
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum")

    def eval_batches(self) -> list[np.ndarray]:
        lengths = np.array([len(x) for x in self.dev_ids], dtype=np.int64)
        return _sorted_batches(lengths, self.eval_batch_size)

    def eval_stats(self, batch_number: int, indices: np.ndarray, device: torch.device) -> Any:
        padded = self.classifier.tokenizer.pad([self.dev_ids[i] for i in indices])
        logits = self.model(padded.input_ids.to(device), padded.attention_mask.to(device)).float()
        gold = torch.as_tensor(self.dev_labels[indices], device=device)
        loss = F.cross_entropy(logits, gold, reduction="sum").item()
        return indices.tolist(), logits.argmax(-1).cpu().tolist(), loss

    def combine(self, stats: Sequence[Any]) -> dict[str, float]:
        indices = [i for s in stats for i in s[0]]
        predicted = np.empty(self.n_dev, dtype=np.int64)
        predicted[indices] = [p for s in stats for p in s[1]]
        report = classification_report(self.dev_labels, predicted, self.classifier.labels)
        return {"loss": sum(s[2] for s in stats) / self.n_dev, "accuracy": report.accuracy,
                "macro_f1": report.macro_f1}

    def save(self, directory: Path) -> None:
        self.classifier.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        loaded = TextClassifier.from_pretrained(directory)
        if loaded.labels != self.classifier.labels:
            raise ValueError(f"{directory} has labels {loaded.labels}, the data has "
                             f"{self.classifier.labels}")
        _copy_weights(loaded.model, self.model)


class MaskedLMTask(Task):
    metric = "loss"
    greater_is_better = False

    def __init__(self, mlm: TextMaskedLM, masker: Masker, train_ids: list[list[int]],
                 dev_ids: list[list[int]] | None = None, eval_batch_size: int = 64,
                 eval_seed: int = 1234):
        self.mlm = mlm
        self.model = mlm.model
        self.masker = masker
        self.train_ids = train_ids
        self.train_lengths = np.array([len(x) for x in train_ids], dtype=np.int64)
        self.dev_ids = dev_ids or []
        self.n_dev = len(self.dev_ids)
        self.eval_batch_size = eval_batch_size
        self.eval_seed = eval_seed  # the dev set is masked the same way at every evaluation

    def _masked(self, ids: list[list[int]], key: int) -> Batch:
        padded = self.mlm.tokenizer.pad(ids)
        generator = torch.Generator().manual_seed(key)
        masked, labels = self.masker(padded.input_ids, padded.attention_mask, generator)
        return {"input_ids": masked, "attention_mask": padded.attention_mask, "labels": labels}

    def collate(self, indices: np.ndarray, key: int) -> Batch:
        return self._masked([self.train_ids[i] for i in indices], key)

    def units(self, batch: Batch) -> int:
        return int((batch["labels"] != IGNORE).sum())

    def loss_sum(self, model: nn.Module, batch: Batch) -> Tensor:
        logits, targets = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return F.cross_entropy(logits.float(), targets, reduction="sum")

    def eval_batches(self) -> list[np.ndarray]:
        lengths = np.array([len(x) for x in self.dev_ids], dtype=np.int64)
        return _sorted_batches(lengths, self.eval_batch_size)

    def eval_stats(self, batch_number: int, indices: np.ndarray, device: torch.device) -> Any:
        batch = self._masked([self.dev_ids[i] for i in indices],
                             batch_key(self.eval_seed, batch_number))
        batch = {k: v.to(device) for k, v in batch.items()}
        logits, targets = self.model(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = F.cross_entropy(logits.float(), targets, reduction="sum").item()
        correct = int((logits.argmax(-1) == targets).sum())
        return loss, correct, len(targets)

    def combine(self, stats: Sequence[Any]) -> dict[str, float]:
        loss = sum(s[0] for s in stats)
        correct = sum(s[1] for s in stats)
        count = sum(s[2] for s in stats)
        mean = loss / max(count, 1)
        return {"loss": mean, "masked_accuracy": correct / max(count, 1),
                "perplexity": float(np.exp(min(mean, 50.0))), "masked_tokens": count}

    def save(self, directory: Path) -> None:
        self.mlm.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        _copy_weights(TextMaskedLM.from_pretrained(directory).model, self.model)


@torch.no_grad()
def _copy_weights(source: nn.Module, target: nn.Module) -> None:
    target.load_state_dict(source.state_dict(), strict=True)
