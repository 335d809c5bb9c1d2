"""SparseEncoder: SPLADE lexical vectors from a masked-LM head.

text -> encoder -> MLM head logits (T, V) -> w_v = max over real tokens t of
log(1 + relu(logit_tv)) -> the non-zero (token id, weight) pairs. "Real tokens" are every
non-padding position, [CLS] and [SEP] included, as SPLADE and sentence-transformers'
SpladePooling compute it.

Loads the ``*ForMaskedLM`` checkpoints of every family transformers has one for (BERT,
RoBERTa, XLM-R, CamemBERT, ELECTRA's generator, DistilBERT, MPNet, ModernBERT; names in
seqenc.checkpoint.heads; older ``LayerNorm.gamma/beta`` names included) and `seqenc train mlm`
outputs (``mlm_head.safetensors``). The head's decoder is the token embedding table (tied)
unless config.json unties it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, detect_family, read_json
from .choices import DTYPES, check_choice
from .heads import LoadedEncoder, MaskedLMNames, load_encoder, mlm_names, take_linear
from .model import resolve_model_path
from .nn.encoder import Encoder
from .tokenizer import TextTokenizer
from .train.mlm import HEAD_FILE as SEQENC_MLM_HEAD
from .train.mlm import MaskedLMHead

_HEAD_CHUNK = 2048  # real tokens per MLM-head matmul: (chunk, V) floats stays ~250 MB at V=30k

Decoder = Callable[[Tensor], Tensor]  # the head's last matmul: x (M, E) -> x W^T (M, V)


@dataclass
class SparseVector:
    """Non-zero weights of one text, heaviest first (ties: lower token id first)."""

    indices: np.ndarray  # (K,) int64 token ids
    values: np.ndarray  # (K,) float32 weights > 0

    def __len__(self) -> int:
        return len(self.indices)

    def to_dense(self, vocab_size: int) -> np.ndarray:
        dense = np.zeros(vocab_size, dtype=np.float32)
        dense[self.indices] = self.values
        return dense


@dataclass
class SparseReport:
    n_texts: int
    n_tokens: int
    truncated_indices: list[int] = field(default_factory=list)
    seconds: float = 0.0


class SparseEncoder:
    """Encoder + masked-LM head: texts in, SPLADE vectors out."""

    def __init__(self, encoder: Encoder, head: MaskedLMHead, tokenizer: TextTokenizer,
                 decoder: Tensor | None = None, path: Path | None = None,
                 device: str | torch.device = "cpu"):
        self.encoder = encoder.eval().to(device)
        self.head = head.eval().to(device)
        self.decoder = decoder.to(device) if decoder is not None else None  # untied decoder
        self.tokenizer = tokenizer
        self.path = path
        self.device = torch.device(device)
        self._copies: dict[str, nn.Module] = {}  # dtype -> _Parts' bf16 copy
        self._parts: _Parts | None = None  # the float32 modules as one, what copies come from

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "cpu",
                        max_length: int | None = None) -> SparseEncoder:
        path = resolve_model_path(name_or_path)
        config = read_json(path / "config.json")
        if (path / SEQENC_MLM_HEAD).exists():  # `seqenc train mlm` output
            from .train.mlm import TextMaskedLM

            mlm = TextMaskedLM.from_pretrained(path)
            tok = mlm.tokenizer
            if max_length is not None:
                tok.set_max_length(min(max_length, mlm.model.encoder.cfg.max_positions))
            return cls(mlm.model.encoder, mlm.model.head, tok, None, path, device)
        names = mlm_names(detect_family(config).name, path)
        loaded = load_encoder(path, [n for n in (names.dense, names.norm, names.bias,
                                                 names.decoder) if n])
        head, decoder = _masked_lm_head(loaded, names, path)
        tok_cfg_file = path / "tokenizer_config.json"
        tok_max = read_json(tok_cfg_file).get("model_max_length") if tok_cfg_file.exists() \
            else None
        limit = loaded.cfg.max_positions
        if max_length is None:
            max_length = int(tok_max) if isinstance(tok_max, (int, float)) and tok_max < 1e6 \
                else limit
        if not (path / "tokenizer.json").exists():
            raise CheckpointError(f"{path} has no tokenizer.json")
        tokenizer = TextTokenizer.from_file(path / "tokenizer.json", min(max_length, limit),
                                            pad_id=loaded.cfg.pad_token_id)
        return cls(loaded.encoder, head, tokenizer, decoder, path, device)

    # ---- facts --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.encoder.cfg.vocab_size

    @property
    def max_seq_length(self) -> int:
        return self.tokenizer.max_length

    def describe(self) -> dict[str, Any]:
        cfg = self.encoder.cfg
        return {"path": str(self.path) if self.path else None, "layers": cfg.n_layers,
                "d_model": cfg.d_model, "vocab_size": cfg.vocab_size,
                "max_seq_length": self.max_seq_length, "pooling": "splade_max"}

    # ---- forward ------------------------------------------------------------------------------
    def modules_for(self, dtype: str = "float32") -> tuple[Encoder, MaskedLMHead, Decoder]:
        """(encoder, head, decoder) computing in ``dtype``, logits = decoder(head.transform(
        hidden)) + head.bias: the originals for float32; for bfloat16 copies made on first use
        and kept while the encoder's, the head's and the decoder's weights stay as they were,
        as SentenceEncoder.encoder_for keeps its own (precision.current_copy: after a training
        step or an in-place edit the next call makes fresh copies; precision.bf16_encoder: on
        CPUs with our bf16 GEMM only the matmuls' inputs are bf16, the decoder's included;
        elsewhere the modules cast to bf16)."""
        if check_choice("dtype", dtype, DTYPES) == "float32":
            weight = self.decoder if self.decoder is not None else \
                self.encoder.embeddings.token.weight
            return self.encoder, self.head, lambda x: x @ weight.T
        from .precision import current_copy

        copy = current_copy(self._copies, dtype, self._float32_parts(), _bf16_parts)
        return copy.encoder, copy.head, copy.decoder

    def _float32_parts(self) -> _Parts:
        """The encoder, head and decoder as one module, made again only when one of them is
        replaced (a new module registers its tensors: precision.is_current would walk them)."""
        parts = self._parts
        if (parts is None or parts.encoder is not self.encoder or parts.head is not self.head
                or parts.decoder is not self.decoder):
            parts = self._parts = _Parts(self.encoder, self.head, self.decoder)
        return parts

    def logits_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32"
                   ) -> tuple[Tensor, Tensor]:
        """MLM logits (B, T, V) float32 of padded id lists, and the keep-mask (B, T). For
        checks on short inputs: the full tensor is B x T x V floats."""
        encoder, head, decoder = self.modules_for(dtype)
        batch = self.tokenizer.pad(ids)
        keep = batch.attention_mask.to(self.device)
        with torch.inference_mode():
            hidden = encoder(batch.input_ids.to(self.device), keep).last_hidden_state
            logits = decoder(head.transform(hidden)) + head.bias
            return (logits.float() if logits.dtype == torch.bfloat16 else logits), keep

    def weights_ids(self, ids: Sequence[Sequence[int]], dtype: str = "float32") -> Tensor:
        """SPLADE weights (B, V) float32 of B id lists: max over real tokens of
        log(1 + relu(logit)). The head runs on real tokens only, a chunk at a time, so no
        (B, T, V) tensor is made."""
        encoder, head, decoder = self.modules_for(dtype)
        batch = self.tokenizer.pad(ids)
        keep = batch.attention_mask.to(self.device)
        with torch.inference_mode():
            hidden = encoder(batch.input_ids.to(self.device), keep).last_hidden_state
            rows = torch.arange(len(ids), device=self.device).unsqueeze(1).expand_as(keep)[keep]
            real = hidden[keep]  # (N, D): real tokens of every text
            out = torch.zeros(len(ids), self.vocab_size, device=self.device)  # (B, V)
            for lo in range(0, len(real), _HEAD_CHUNK):
                logits = decoder(head.transform(real[lo: lo + _HEAD_CHUNK])) + head.bias
                w = torch.log1p(torch.relu(logits.to(out.dtype)))
                index = rows[lo: lo + _HEAD_CHUNK].unsqueeze(1).expand_as(w)  # (n, V)
                out.scatter_reduce_(0, index, w, "amax", include_self=True)
        return out

    def encode(self, texts: str | Sequence[str], batch_size: int = 32, top_k: int | None = None,
               truncate: bool = True, show_progress: bool = False, return_report: bool = False,
               dtype: str = "float32"):
        """SPLADE vectors: one SparseVector per text (or one for a single string). ``top_k``
        keeps the heaviest k weights; ``truncate=False`` raises for a text over max_seq_length
        instead of cutting it; ``dtype="bfloat16"`` computes in bf16 (weights come out
        float32 either way)."""
        start = time.perf_counter()
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        check_choice("dtype", dtype, DTYPES)
        tokenized = self.tokenizer.encode(texts)
        if tokenized.truncated and not truncate:
            first = tokenized.truncated[0]
            raise ValueError(f"input {first} has {self.tokenizer.count_tokens(texts[first])} "
                             f"tokens, more than max_seq_length={self.max_seq_length}")
        lengths = tokenized.lengths
        order = np.argsort(-lengths, kind="stable")
        vectors: list[SparseVector | None] = [None] * len(texts)
        batches = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        for lo in batches:
            idx = order[lo: lo + batch_size]
            weights = self.weights_ids([tokenized.ids[i] for i in idx], dtype)
            for row, i in enumerate(idx):
                vectors[i] = to_sparse(weights[row], top_k)
        result: Any = vectors[0] if single else vectors
        if not return_report:
            return result
        return result, SparseReport(len(texts), int(lengths.sum()), list(tokenized.truncated),
                                    time.perf_counter() - start)

    def decode(self, vector: SparseVector) -> dict[str, float]:
        """The vocabulary-string view: token string -> weight, heaviest first."""
        tok = self.tokenizer.tokenizer
        return {tok.id_to_token(int(i)) or f"[{int(i)}]": float(v)
                for i, v in zip(vector.indices, vector.values, strict=True)}


class _Parts(nn.Module):
    """A SparseEncoder's float32 modules, the untied decoder matrix itself (not a copy) among
    its buffers: what its bf16 copies are made from, and checked against while they are kept
    (precision.made_from and is_current take one module)."""

    def __init__(self, encoder: Encoder, head: MaskedLMHead, decoder: Tensor | None):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.register_buffer("decoder", decoder)


def _bf16_parts(parts: _Parts) -> nn.Module:
    """``parts``' bf16 copy: ``encoder``, ``head``, and ``decoder`` as a module."""
    from .precision import bf16_encoder

    weight = parts.decoder if parts.decoder is not None else parts.encoder.embeddings.token.weight
    # one module, so that the scheme is chosen once for all three
    copy = nn.Module()
    copy.encoder, copy.head, copy.decoder = parts.encoder, parts.head, _PaddedDecoder(weight)
    return bf16_encoder(copy)


class _PaddedDecoder(nn.Module):
    """x (M, E) -> x W^T (M, V) for the decoder matrix W (V, E), as an nn.Linear that
    precision.bf16_encoder can turn into a Bf16Linear: W's rows padded with zeros to a multiple
    of 16, the output widths our bf16 GEMM takes (BERT's 30,522 tokens are not one); the
    padding's columns are dropped."""

    def __init__(self, weight: Tensor):
        super().__init__()
        V, E = weight.shape
        self.vocab_size = V
        self.linear = nn.utils.skip_init(nn.Linear, E, -(-V // 16) * 16, bias=False,
                                         device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight[:V] = weight
            self.linear.weight[V:] = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)[..., : self.vocab_size]


def _masked_lm_head(loaded: LoadedEncoder, names: MaskedLMNames,
                    path: Path) -> tuple[MaskedLMHead, Tensor | None]:
    """The family's *ForMaskedLM head from the checkpoint's leftover tensors, and the decoder
    matrix when it is not tied to the token embeddings (None when it is)."""
    config, left = loaded.config, loaded.leftovers
    if f"{names.dense}.weight" not in left:
        raise CheckpointError(f"{path} has no masked-LM head ({names.dense}.weight): load a "
                              "*ForMaskedLM checkpoint")
    dense_bias, norm_bias, out_bias = names.biases(config)
    head = MaskedLMHead(loaded.cfg, names.activation(config), dense_bias, norm_bias)
    take_linear(left, names.dense, head.dense, path)
    take_linear(left, names.norm, head.norm, path)
    bias = left.pop(names.bias, None) if names.bias else None
    decoder = left.pop(f"{names.decoder}.weight", None)
    decoder_bias = left.pop(f"{names.decoder}.bias", None)
    if config.get("tie_word_embeddings", True) is False:  # a decoder of its own
        if decoder is None:
            raise CheckpointError(f"{path}: tie_word_embeddings is false but the "
                                  f"checkpoint has no {names.decoder}.weight")
        bias = decoder_bias if decoder_bias is not None else bias
    else:  # tied, as transformers loads it: the embeddings (and the head's own bias)
        decoder = None
        bias = bias if bias is not None else decoder_bias
    if bias is None and out_bias:
        raise CheckpointError(f"{path}: the masked-LM head has no output bias "
                              f"({names.bias or names.decoder + '.bias'})")
    if bias is not None:
        if tuple(bias.shape) != (loaded.cfg.vocab_size,):
            raise CheckpointError(f"{path}: the masked-LM output bias has shape "
                                  f"{tuple(bias.shape)}, expected ({loaded.cfg.vocab_size},)")
        with torch.no_grad():
            head.bias.copy_(bias)
    if left:
        raise CheckpointError(f"{path}: unexpected head tensors {', '.join(left)}")
    return head, decoder


def to_sparse(weights: Tensor, top_k: int | None = None) -> SparseVector:
    """(V,) weights -> the non-zero ones, heaviest first (top_k of them)."""
    nonzero = weights.nonzero().squeeze(1)
    values = weights[nonzero]
    # Stable sort of the ids (already ascending) by weight: ties keep the lower id first.
    order = torch.sort(values, descending=True, stable=True).indices[:top_k]
    return SparseVector(nonzero[order].cpu().numpy().astype(np.int64),
                        values[order].cpu().numpy().astype(np.float32))
