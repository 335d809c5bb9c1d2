"""SentenceEncoder: tokenizer -> batcher -> encoder -> pooling -> vectors. The only path from
text to vectors; the CLI, the server and the benchmarks all go through ``encode``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .allocator import release_free_memory, tune_memory
from .batching import plan_batches
from .checkpoint import BY_NAME, read_checkpoint, write_checkpoint
from .choices import ENCODE_DTYPES, ENCODE_OUTPUTS, POOLINGS, PRECISIONS, check_choice
from .nn.encoder import Encoder
from .pooling import pool
from .quantize import quantize
from .resolve import (  # re-exported: callers import them from here
    DEFAULT_MODEL,
    DEFAULT_NAMES,
    ModelNotFoundError,
    default_model_path,
    resolve_device,
    resolve_model_path,
)
from .threads import run_batches
from .tokenizer import TextTokenizer

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "DEFAULT_NAMES", "EncodeReport", "ModelNotFoundError",
           "SentenceEncoder", "components", "default_model_path", "evaluating", "resolve_device",
           "resolve_model_path"]

_RELEASE_EVERY = 256  # batches between malloc_trim calls in one long encode (~10-20 ms each)
_TORCH_DTYPES = {name: getattr(torch, name) for name in ENCODE_DTYPES}  # "int8": torch.int8
_memory_tuned = False  # whether a SentenceEncoder applied tune_memory() in this process


@dataclass
class EncodeReport:
    n_texts: int
    n_tokens: int  # real tokens fed to the encoder, after truncation
    n_truncated: int
    truncated_indices: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _tune_memory_once() -> None:
    """seqenc.allocator.tune_memory() on the first ``encode`` of a process, as the CLI, server
    and benchmarks apply it at start: without it glibc hands each large activation buffer back
    on free and page-faults it in afresh the next batch (slower GEMMs, see allocator.py).
    Process-wide (glibc's mmap/trim thresholds, oneDNN's cache capacity), so a program that
    manages its own allocator opts out with SEQENC_TUNE_MEMORY=0."""
    global _memory_tuned
    if not _memory_tuned and os.environ.get("SEQENC_TUNE_MEMORY", "1") != "0":
        tune_memory()
        _memory_tuned = True


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
        family: str | None = None,
    ):
        """``encoder`` is used as given (its train/eval mode is left alone: encoding runs it
        in eval mode for the call); it is moved to ``device``. ``family`` names the checkpoint
        family it was loaded from (``save_pretrained`` writes that layout when it can)."""
        check_choice("pooling", pooling, POOLINGS)
        if family is not None:
            check_choice("family", family, BY_NAME)
        self.encoder = encoder.to(device)
        self.family = family
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.path = path
        self.device = torch.device(device)
        self._encoders: dict[torch.dtype, Encoder] = {}  # bf16/int8 inference copies

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu"
    ) -> SentenceEncoder:
        """Load a model directory of any supported family (see ``seqenc.checkpoint``)."""
        path = resolve_model_path(name_or_path)
        loaded = read_checkpoint(path)
        tokenizer = TextTokenizer.from_file(loaded.tokenizer_file, loaded.max_length,
                                            pad_id=loaded.encoder.cfg.pad_token_id)
        return cls(loaded.encoder, tokenizer, loaded.pooling, loaded.normalize, path=path,
                   device=device, family=loaded.family.name)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the sentence-transformers layout that ``from_pretrained`` (and
        sentence-transformers itself) reads back, in this model's family's names."""
        return write_checkpoint(Path(directory), self.encoder, self.tokenizer.tokenizer.to_str(),
                                self.pooling, self.normalize, self.max_seq_length, self.family)

    # ---- facts -----------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return self.encoder.cfg.d_model

    @property
    def max_seq_length(self) -> int:
        return self.tokenizer.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        limit = self.encoder.cfg.longest_sequence
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= limit:
            raise ValueError(f"max_seq_length must be an integer in [2, {limit}], got {value!r}")
        self.tokenizer.set_max_length(value)

    def describe(self) -> dict[str, Any]:
        cfg = self.encoder.cfg
        return {
            "path": str(self.path) if self.path else None,
            "family": self.family or "(built in seqenc)",
            **components(cfg),
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
        _tune_memory_once()  # before the first forward pass: oneDNN reads its cache size once
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
        encoder = self.encoder_for(dtype)  # build the dtype's copy before the first batch
        order = np.argsort(-lengths, kind="stable")  # longest first: OOM shows up at once
        sentence = np.empty((len(texts), self.dimension), dtype=np.float32)
        tokens: list[np.ndarray | None] = [None] * len(texts)
        # Rows or a token budget bound each pass; the fewest passes, then the least padding
        # (the encoder packs real tokens, so each extra pass costs more than padding saves).
        rows = batch_size if batch_tokens is None else None
        plan = plan_batches(lengths[order], rows, batch_tokens, pass_cost=None)
        batches = list(pairwise(plan))
        workers = torch.get_num_threads() if self.device.type == "cpu" else 1

        @torch.inference_mode()  # (per thread: run_batches may run it on another one)
        def run(n: int) -> None:  # one batch
            idx = order[batches[n][0]:batches[n][1]]
            hidden, keep = self.forward_ids([tokenized.ids[i] for i in idx], dtype)
            if output == "token":
                for row, i in enumerate(idx):
                    tokens[i] = hidden[row, : lengths[i]].cpu().numpy()
                return
            vectors = pool(hidden, keep, pooling)  # (B, D)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            sentence[idx] = vectors.cpu().numpy()

        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(batches), desc="encode", unit="batch")
        # the training flag is set here, once: batches side by side must not toggle it
        with evaluating(encoder):
            # several batches at once on the CPU, one thread each (threads.run_batches)
            for done, _ in enumerate(run_batches(run, len(batches), workers), start=1):
                if done % _RELEASE_EVERY == 0:
                    release_free_memory()  # see allocator.py: varied shapes fragment the heap
                if progress is not None:
                    progress.update()
        if progress is not None:
            progress.close()

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
        check_choice("dtype", dtype, ENCODE_DTYPES)

    def forward_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32"):
        """One forward pass over token-id lists ([CLS] ... [SEP] included, as ``tokenizer``
        makes them): ``(hidden (B, T, D) float32, keep (B, T) bool)``, padded to the longest."""
        batch = self.tokenizer.pad(ids)
        input_ids, keep = batch.input_ids, batch.attention_mask
        if self.device.type == "cuda":  # page-locked host memory: the copies run async
            input_ids, keep = input_ids.pin_memory(), keep.pin_memory()
        input_ids = input_ids.to(self.device, non_blocking=True)
        keep = keep.to(self.device, non_blocking=True)
        encoder = self.encoder_for(dtype)
        with torch.inference_mode(), evaluating(encoder):
            hidden = encoder(input_ids, keep).last_hidden_state.float()
        return hidden, keep

    def embed_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32",
                  pooling: str | None = None) -> torch.Tensor:
        """Pooled, not normalised, (B, D) float32 vectors of B token-id lists."""
        hidden, keep = self.forward_ids(ids, dtype)
        return pool(hidden, keep, pooling or self.pooling)

    def encoder_for(self, dtype: str = "float32") -> Encoder:
        """The inference encoder for ``dtype`` ("float32", "bfloat16" or "int8"). float32: the
        model itself. The others are copies, made on first use and kept while ``self.encoder``'s
        weights stay as they were (precision.is_current): after a training step or an in-place
        edit the next call makes a fresh copy. int8: every linear layer int8
        (seqenc.int8.int8_encoder; x86-64 CPUs). bfloat16: seqenc.precision.bf16_encoder (on
        AVX512-BF16 CPUs bf16 GEMM inputs with everything else float32; elsewhere the encoder
        cast to bf16)."""
        from .precision import bf16_encoder, current_copy  # bf16 GEMM inputs only, where it can

        torch_dtype = _TORCH_DTYPES[check_choice("dtype", dtype, ENCODE_DTYPES)]
        if torch_dtype == torch.float32:
            return self.encoder
        if torch_dtype == torch.int8:
            from .int8 import int8_encoder

            return current_copy(self._encoders, torch_dtype, self.encoder,
                                lambda encoder: int8_encoder(encoder, self.tokenizer))
        return current_copy(self._encoders, torch_dtype, self.encoder, bf16_encoder)


def components(cfg) -> dict[str, str]:
    """What the encoder is made of, in words (``seqenc info``)."""
    absolute = {"learned": "learned absolute",
                "learned_offset": "learned absolute from pad_token_id + 1",
                "sinusoidal": "sinusoidal", "none": ""}[cfg.position_encoding]
    relative = {"none": "",
                "rotary": f"rotary (base {cfg.rotary_base:g}"
                          + (f", local {cfg.rotary_local_base:g}" if cfg.rotary_local_base
                             else "") + ")",
                "buckets": f"relative bias ({cfg.relative_buckets} buckets)"}[
        cfg.relative_positions]
    gated = {"silu": "SwiGLU", "gelu": "GeGLU", "gelu_tanh": "GeGLU (tanh)"}
    ffn = (gated.get(cfg.activation, f"{cfg.activation}-gated") if cfg.feed_forward == "glu"
           else f"{cfg.activation} MLP")
    attention = "global" if not cfg.attention_window else (
        f"window {cfg.attention_window}, global every {cfg.global_every} layers")
    return {
        "positions": " + ".join(p for p in (absolute, relative) if p) or "none",
        "attention": attention,
        "feed_forward": ffn + ("" if cfg.bias else ", no biases"),
        "norm": f"{cfg.norm}-LayerNorm" + ("" if cfg.norm_bias else " without bias")
                + (", final LayerNorm" if cfg.final_norm else ""),
        "embeddings": f"{cfg.embedding_size or cfg.d_model} wide"
                      + (f", projected to {cfg.d_model}" if cfg.embedding_size else ""),
    }


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (no dropout) and give it back in the mode it came in."""
    was_training = module.training
    if was_training:
        module.eval()
    try:
        yield
    finally:
        if was_training:
            module.train()
