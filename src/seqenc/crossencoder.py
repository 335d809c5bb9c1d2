"""CrossEncoder: a query and a document read together -> a relevance score (reranking).

text pair -> pair template (pairs.py) -> encoder -> first token -> PairHead -> logits ->
sigmoid (one label) or the raw logits. Reads and writes the Hugging Face
``*ForSequenceClassification`` layout (config.json with ``num_labels``/``id2label``,
model.safetensors with the family's encoder prefix and head names, tokenizer.json), which
transformers' AutoModelForSequenceClassification and sentence-transformers' CrossEncoder load.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import BY_NAME, CheckpointError, detect_family, read_json, to_state_dict
from .choices import DTYPES, check_choice
from .heads import LoadedEncoder, PairHead, classifier_names, load_encoder, take_linear
from .nn.encoder import Encoder
from .pairs import PairTokenizer
from .resolve import resolve_model_path

ACTIVATIONS = {"sigmoid": "torch.nn.modules.activation.Sigmoid",
               "identity": "torch.nn.modules.linear.Identity"}
_ARCHITECTURES = {"bert": "BertForSequenceClassification",
                  "roberta": "RobertaForSequenceClassification",
                  "xlm-roberta": "XLMRobertaForSequenceClassification",
                  "camembert": "CamembertForSequenceClassification",
                  "electra": "ElectraForSequenceClassification",
                  "distilbert": "DistilBertForSequenceClassification",
                  "mpnet": "MPNetForSequenceClassification"}
_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "sentencepiece.bpe.model", "vocab.json", "merges.txt")


class RankedDocument(NamedTuple):
    index: int  # position in the documents given to ``rank``
    score: float
    text: str | None = None  # the document, when asked for


@dataclass
class PairReport:
    n_pairs: int
    n_tokens: int
    truncated: dict[int, str] = field(default_factory=dict)  # index -> first | second | both
    seconds: float = 0.0


class PairClassifier(nn.Module):
    """Encoder -> first token -> PairHead: (B, T) ids, mask, token types -> (B, C) logits."""

    def __init__(self, encoder: Encoder, head: PairHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                token_type_ids: Tensor | None = None) -> Tensor:
        if self.encoder.cfg.type_vocab_size == 0:
            token_type_ids = None
        hidden = self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state
        return self.head(hidden[:, 0])  # (B, C)


class CrossEncoder:
    """Scores (query, document) pairs; ``rank`` sorts documents for one query."""

    def __init__(self, model: PairClassifier, tokenizer: PairTokenizer, config: dict[str, Any],
                 family: str = "bert", activation: str | None = None, path: Path | None = None,
                 device: str | torch.device = "cpu"):
        n_labels = model.head.out.out_features
        activation = activation or ("sigmoid" if n_labels == 1 else "identity")
        check_choice("activation", activation, ACTIVATIONS)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.config = config
        self.family = family
        self.activation = activation
        self.path = path
        self.device = torch.device(device)
        self._models: dict[str, PairClassifier] = {}  # inference copies per compute dtype

    # ---- loading and saving -----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "cpu",
                        max_length: int | None = None) -> CrossEncoder:
        """A ``*ForSequenceClassification`` directory (or one ``save_pretrained`` wrote)."""
        path = resolve_model_path(name_or_path)
        config = read_json(path / "config.json")
        names = classifier_names(detect_family(config).name, path)
        loaded = load_encoder(path, [names.dense, names.out])
        if f"{names.out}.weight" not in loaded.leftovers:
            raise CheckpointError(
                f"{path} has no sequence-classification head ({names.out}.weight): it is a "
                "plain encoder. Fine-tune one with `seqenc train pairs --from "
                f"{path}` or load it with CrossEncoder.from_encoder(path, num_labels)"
            )
        n_labels = int(loaded.leftovers[f"{names.out}.weight"].shape[0])
        model = _build(loaded, n_labels, path)
        activation = _activation_from_config(config)
        tokenizer = _pair_tokenizer(path, loaded, max_length)
        return cls(model.eval(), tokenizer, config, loaded.family.name, activation, path,
                   device)

    @classmethod
    def from_encoder(cls, name_or_path: str | os.PathLike | None, num_labels: int = 1,
                     device: str = "cpu", max_length: int | None = None) -> CrossEncoder:
        """A new, randomly initialised head on a pretrained encoder, to fine-tune. As
        transformers does, a BERT checkpoint's pooler is kept and only the output layer is new
        (seed torch's RNG first for a reproducible head)."""
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        path = resolve_model_path(name_or_path)
        config = read_json(path / "config.json")
        names = classifier_names(detect_family(config).name, path)
        loaded = load_encoder(path, [names.dense, names.out])
        has_dense = f"{names.dense}.weight" in loaded.leftovers
        loaded.leftovers = {k: v for k, v in loaded.leftovers.items()
                            if k.startswith(names.dense + ".")}
        model = _build(loaded, num_labels, path, init=True, keep_dense=has_dense)
        labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        config = {k: v for k, v in config.items() if k not in ("id2label", "label2id")}
        config.update(id2label=labels, label2id={v: int(k) for k, v in labels.items()})
        tokenizer = _pair_tokenizer(path, loaded, max_length)
        return cls(model, tokenizer, config, loaded.family.name, None, path, device)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """The transformers layout: config.json, model.safetensors, tokenizer files."""
        from safetensors.torch import save_file

        family = BY_NAME[self.family]
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        encoder_state = {k: v.detach().cpu() for k, v in self.model.encoder.state_dict().items()}
        prefix = family.prefixes[0]  # "bert.", "roberta.", ...: the task model's encoder
        tensors = {prefix + k: v for k, v in to_state_dict(encoder_state, family).items()}
        names = classifier_names(self.family, out)
        dense = prefix + names.dense if names.dense.startswith("pooler.") else names.dense
        for name, layer in ((dense, self.model.head.dense), (names.out, self.model.head.out)):
            tensors[f"{name}.weight"] = layer.weight.detach().cpu().contiguous()
            tensors[f"{name}.bias"] = layer.bias.detach().cpu().contiguous()
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = dict(self.config)
        config["architectures"] = [_ARCHITECTURES[self.family]]
        config["sentence_transformers"] = {"activation_fn": ACTIVATIONS[self.activation]}
        _write_json(out / "config.json", config)
        self.tokenizer.vocab.save(str(out / "tokenizer.json"))  # no truncation/padding baked in
        self._save_tokenizer_config(out)
        return out

    def _save_tokenizer_config(self, out: Path) -> None:
        source = self.path
        if source is not None and source.resolve() != out.resolve():
            for name in _TOKENIZER_FILES:
                if (source / name).exists():
                    shutil.copyfile(source / name, out / name)
        tok_cfg_file = out / "tokenizer_config.json"
        tok_cfg = read_json(tok_cfg_file) if tok_cfg_file.exists() else {}
        tok_cfg["model_max_length"] = self.max_length
        _write_json(tok_cfg_file, tok_cfg)

    # ---- facts --------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return self.model.head.out.out_features

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        limit = self.model.encoder.cfg.max_positions
        if isinstance(value, bool) or not isinstance(value, int) or not 4 <= value <= limit:
            raise ValueError(f"max_length must be an integer in [4, {limit}], got {value!r}")
        self.tokenizer.set_max_length(value)

    def describe(self) -> dict[str, Any]:
        cfg = self.model.encoder.cfg
        return {"path": str(self.path) if self.path else None, "family": self.family,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "layers": cfg.n_layers, "d_model": cfg.d_model, "num_labels": self.num_labels,
                "activation": self.activation, "max_length": self.max_length}

    # ---- scoring ------------------------------------------------------------------------------
    def model_for(self, dtype: str = "float32") -> PairClassifier:
        """The model that computes in ``dtype``: ``self.model`` for float32; for bfloat16 a
        copy made on first use and kept while ``self.model``'s weights stay as they were, as
        SentenceEncoder.encoder_for keeps its own (seqenc.precision.bf16_encoder: on CPUs with
        our bf16 GEMM only the matmuls' inputs are bf16, encoder and head alike; elsewhere the
        model cast to bf16). After training ``self.model`` the next call makes a fresh copy."""
        from .precision import bf16_encoder, current_copy

        if check_choice("dtype", dtype, DTYPES) == "float32":
            return self.model
        return current_copy(self._models, dtype, self.model, bf16_encoder)

    def logits_ids(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]],
                   dtype: str = "float32") -> Tensor:
        """Raw logits (B, C) float32 of B already tokenised pairs (one padded forward pass)."""
        batch = _pad(ids, type_ids, self.tokenizer.pad_id)
        model = self.model_for(dtype)
        with torch.inference_mode():
            logits = model(*(t.to(self.device) for t in batch))
        return logits.float()

    def activate(self, logits: Tensor, raw: bool = False, apply_softmax: bool = False) -> Tensor:
        if raw:
            return logits
        if apply_softmax and logits.shape[-1] > 1:
            return logits.softmax(-1)
        return logits.sigmoid() if self.activation == "sigmoid" else logits

    def predict(self, pairs: Sequence[Sequence[str]] | tuple[str, str], batch_size: int = 32,
                raw: bool = False, apply_softmax: bool = False, truncate: bool = True,
                strategy: str = "longest_first", direction: str = "right",
                show_progress: bool = False, return_report: bool = False,
                dtype: str = "float32"):
        """Scores of (first, second) text pairs: (N,) for one label, (N, C) for several; one
        pair in -> one score (or row) out. Sigmoid for one label unless ``raw``; ``truncate``
        False raises PairTooLong instead of cutting; ``return_report`` adds a PairReport that
        says which pairs were cut on which side; ``dtype="bfloat16"`` computes in bf16
        (scores are float32 either way)."""
        start = time.perf_counter()
        single = len(pairs) == 2 and all(isinstance(t, str) for t in pairs)
        pairs = [pairs] if single else list(pairs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        tokenized = self.tokenizer.encode(pairs, truncate, strategy, direction)
        lengths = np.array([len(x) for x in tokenized.ids], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        scores = np.empty((len(pairs), self.num_labels), dtype=np.float32)
        self.model.eval()
        model_dtype = check_choice("dtype", dtype, DTYPES)
        self.model_for(model_dtype)  # build a bf16 copy before the first batch
        batches = range(0, len(pairs), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="rerank", unit="batch")
        for lo in batches:
            idx = order[lo: lo + batch_size]
            logits = self.logits_ids([tokenized.ids[i] for i in idx],
                                     [tokenized.type_ids[i] for i in idx], model_dtype)
            scores[idx] = self.activate(logits, raw, apply_softmax).cpu().numpy()
        result = scores[:, 0] if self.num_labels == 1 else scores
        result = result[0] if single else result
        if not return_report:
            return result
        report = PairReport(len(pairs), int(lengths.sum()), dict(tokenized.cut),
                            time.perf_counter() - start)
        return result, report

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None,
             return_documents: bool = False, batch_size: int = 32, raw: bool = False,
             truncate: bool = True, dtype: str = "float32") -> list[RankedDocument]:
        """Documents sorted by their score for ``query``, best first (top_k of them)."""
        if self.num_labels != 1:
            raise ValueError(f"rank needs a one-label cross-encoder; this one has "
                             f"{self.num_labels} labels")
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if isinstance(documents, str):
            raise TypeError("documents must be a list of strings, not one string")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        documents = list(documents)
        if not documents:
            return []
        scores = self.predict([(query, d) for d in documents], batch_size, raw=raw,
                              truncate=truncate, dtype=dtype)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [RankedDocument(int(i), float(scores[i]),
                               documents[i] if return_documents else None) for i in order]


# ---- helpers -----------------------------------------------------------------------------------


def _build(loaded: LoadedEncoder, n_labels: int, where: Path, init: bool = False,
           keep_dense: bool = False) -> PairClassifier:
    names = classifier_names(loaded.family.name, where)
    dropout = loaded.config.get("classifier_dropout")
    if dropout is None:
        dropout = loaded.config.get("hidden_dropout_prob", 0.1)
    head = PairHead(loaded.cfg.d_model, n_labels, names.activation, float(dropout),
                    names.dropout_before_dense)
    if init:  # transformers' _init_weights: normal(0, initializer_range), zero bias
        head.init_weights(float(loaded.config.get("initializer_range", 0.02)),
                          dense=not keep_dense)
    if not init or keep_dense:
        take_linear(loaded.leftovers, names.dense, head.dense, where)
    if not init:
        take_linear(loaded.leftovers, names.out, head.out, where)
    if loaded.leftovers:
        raise CheckpointError(f"{where}: unexpected head tensors {', '.join(loaded.leftovers)}")
    return PairClassifier(loaded.encoder, head)


def _activation_from_config(config: dict[str, Any]) -> str | None:
    st = config.get("sentence_transformers") or {}
    name = st.get("activation_fn") if isinstance(st, dict) else None
    if name is None:
        return None
    for ours, theirs in ACTIVATIONS.items():
        if name == theirs or name.rsplit(".", 1)[-1].lower() == ours:
            return ours
    raise CheckpointError(f"config.json: activation_fn {name!r} is not supported "
                          f"({', '.join(ACTIVATIONS.values())})")


def _pair_tokenizer(path: Path, loaded: LoadedEncoder, max_length: int | None) -> PairTokenizer:
    from tokenizers import Tokenizer

    if not (path / "tokenizer.json").exists():
        raise CheckpointError(f"{path} has no tokenizer.json")
    limit = loaded.cfg.max_positions
    if max_length is None:
        tok_cfg_file = path / "tokenizer_config.json"
        tok_max = read_json(tok_cfg_file).get("model_max_length") \
            if tok_cfg_file.exists() else None
        max_length = int(tok_max) if isinstance(tok_max, (int, float)) and tok_max < 1e6 \
            else limit
    if not 4 <= max_length:
        raise ValueError(f"max_length must be at least 4, got {max_length}")
    return PairTokenizer(Tokenizer.from_file(str(path / "tokenizer.json")),
                         min(max_length, limit), pad_id=loaded.cfg.pad_token_id)


def _pad(ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]],
         pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad to the longest: (B, T) ids, keep-mask, token types."""
    T = max((len(x) for x in ids), default=0)
    input_ids = np.full((len(ids), T), pad_id, dtype=np.int64)
    types = np.zeros((len(ids), T), dtype=np.int64)
    keep = np.zeros((len(ids), T), dtype=bool)
    for row, (seq, tt) in enumerate(zip(ids, type_ids, strict=True)):
        input_ids[row, : len(seq)] = seq
        types[row, : len(tt)] = tt
        keep[row, : len(seq)] = True
    return torch.from_numpy(input_ids), torch.from_numpy(keep), torch.from_numpy(types)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
