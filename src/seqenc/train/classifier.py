"""Text classification: encoder -> pooling -> dropout -> linear, saved beside a sentence encoder.

A classifier directory is an ordinary sentence-encoder directory (``SentenceEncoder`` and
``seqenc encode --model DIR`` read it) plus two files:

    classifier.safetensors   the output layer: ``weight`` (C, D), ``bias`` (C,)
    labels.json              {"labels": [...], "pooling": ..., "dropout": ...}; labels[i] is
                             the class of logit i
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from seqenc.checkpoint import CheckpointError
from seqenc.choices import POOLINGS, check_choice
from seqenc.model import SentenceEncoder
from seqenc.nn.encoder import Encoder
from seqenc.pooling import pool
from seqenc.tokenizer import TextTokenizer

HEAD_FILE = "classifier.safetensors"
LABELS_FILE = "labels.json"
FORMAT = "seqenc-classifier/1"


class ClassificationHead(nn.Module):
    """dropout -> linear: a pooled vector (B, D) -> logits (B, C)."""

    def __init__(self, d_model: int, n_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.out(self.dropout(pooled))


class SequenceClassifier(nn.Module):
    """Encoder -> pooling over real tokens -> ClassificationHead: logits over the labels."""

    def __init__(self, encoder: Encoder, n_labels: int, pooling: str = "mean",
                 dropout: float | None = None):
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        if n_labels < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {n_labels}")
        self.encoder = encoder
        self.pooling = pooling
        self.head = ClassificationHead(
            encoder.cfg.d_model, n_labels, encoder.cfg.dropout if dropout is None else dropout
        )

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) ids and keep-mask -> (B, C) logits."""
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state  # (B, T, D)
        return self.head(pool(hidden, attention_mask, self.pooling))

    @torch.no_grad()
    def init_head(self, std: float = 0.02) -> SequenceClassifier:
        """BERT's initialisation for the new layer: normal(0, std) weights, zero bias."""
        self.head.out.weight.normal_(0.0, std)
        self.head.out.bias.zero_()
        return self


class TextClassifier:
    """A SequenceClassifier with its tokenizer and label names: texts in, labels out."""

    def __init__(self, model: SequenceClassifier, tokenizer: TextTokenizer, labels: Sequence[str],
                 normalize: bool = False, family: str | None = None):
        if len(labels) != model.head.out.out_features:
            raise ValueError(f"{len(labels)} labels for {model.head.out.out_features} outputs")
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.normalize = normalize  # kept for the sentence-encoder view only; the head never
        # sees normalised vectors
        self.family = family  # checkpoint family of the encoder (saved in that layout)

    @classmethod
    def from_encoder(cls, encoder: SentenceEncoder, labels: Sequence[str],
                     dropout: float | None = None) -> TextClassifier:
        """A new head on a (pretrained or fresh) sentence encoder; the head is initialised from
        torch's global RNG, so seed it first."""
        model = SequenceClassifier(encoder.encoder, len(labels), encoder.pooling, dropout)
        return cls(model.init_head(), encoder.tokenizer, labels, encoder.normalize, encoder.family)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> TextClassifier:
        path = Path(path)
        if not (path / HEAD_FILE).exists() or not (path / LABELS_FILE).exists():
            raise CheckpointError(
                f"{path} is not a classifier directory (it needs {HEAD_FILE} and {LABELS_FILE}; "
                "train one with `seqenc train classify`)"
            )
        encoder = SentenceEncoder.from_pretrained(path, device=device)
        meta = json.loads((path / LABELS_FILE).read_text(encoding="utf-8"))
        labels = meta.get("labels")
        if not isinstance(labels, list) or len(labels) < 2:
            raise CheckpointError(f"{path / LABELS_FILE}: 'labels' must list at least 2 labels")
        model = SequenceClassifier(encoder.encoder, len(labels), meta.get("pooling",
                                   encoder.pooling), meta.get("dropout"))
        load_head(model.head, path / HEAD_FILE)
        return cls(model.to(device).eval(), encoder.tokenizer, labels, encoder.normalize,
                   encoder.family)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the sentence-encoder layout, then the head and the label map beside it."""
        from safetensors.torch import save_file

        out = Path(directory)
        self.sentence_encoder().save_pretrained(out)
        head = {k: v.detach().cpu().contiguous()
                for k, v in self.model.head.out.state_dict().items()}
        save_file(head, str(out / HEAD_FILE), metadata={"format": FORMAT})
        meta = {"format": FORMAT, "labels": self.labels, "pooling": self.model.pooling,
                "dropout": self.model.head.dropout.p}
        (out / LABELS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    def sentence_encoder(self) -> SentenceEncoder:
        """The fine-tuned encoder as a SentenceEncoder (sharing its modules)."""
        device = next(self.model.parameters()).device
        return SentenceEncoder(self.model.encoder, self.tokenizer, self.model.pooling,
                               self.normalize, device=device, family=self.family)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, C) class probabilities, in input order (batched longest first)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        tokenized = self.tokenizer.encode(list(texts))
        order = np.argsort(-tokenized.lengths, kind="stable")
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            idx = order[lo: lo + batch_size]
            batch = self.tokenizer.pad([tokenized.ids[i] for i in idx])
            logits = self.model(batch.input_ids.to(device), batch.attention_mask.to(device))
            probs[idx] = logits.float().softmax(-1).cpu().numpy()
        return probs

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        probs = self.predict_proba(texts, batch_size)
        return [self.labels[i] for i in probs.argmax(axis=1)]


def load_head(head: ClassificationHead, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    want = {k: tuple(v.shape) for k, v in head.out.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        raise CheckpointError(f"{path}: expected tensors {want}, found {got}")
    head.out.load_state_dict(state)
