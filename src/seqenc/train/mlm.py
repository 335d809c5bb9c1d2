"""Masked-language-model pretraining pieces: BERT's masking, the tied MLM head, the model.

Masking (Devlin et al. 2019): select each real, non-special token with probability 0.15; of
the selected, 80% become [MASK], 10% a random (non-special) token, 10% stay as they are. The
loss is cross-entropy on the selected positions only (labels elsewhere are IGNORE).

An MLM directory is an ordinary sentence-encoder directory plus ``mlm_head.safetensors``
(dense, norm and output bias; the decoder weight is the token embedding table, tied as BERT).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from seqenc.checkpoint import CheckpointError
from seqenc.model import SentenceEncoder
from seqenc.nn.config import EncoderConfig
from seqenc.nn.encoder import Encoder
from seqenc.nn.feedforward import activation_fn
from seqenc.tokenizer import TextTokenizer

IGNORE = -100  # label of positions that carry no loss (torch's cross_entropy ignore_index)
HEAD_FILE = "mlm_head.safetensors"
# Mask tokens by convention (BERT/ELECTRA/MPNet-style WordPiece, RoBERTa/XLM-R/ModernBERT),
# for a tokenizer.json with no special-tokens map beside it.
MASK_TOKENS = ("[MASK]", "<mask>")


def _map_entry(value: Any) -> str | None:
    """A special-tokens map entry: "<mask>" or {"content": "<mask>", ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def find_special_token(tok: Tokenizer, role: str, conventional: Sequence[str],
                       directory: str | os.PathLike | None = None) -> str | None:
    """The tokenizer's ``role`` token ("mask_token", "pad_token"): as named by the
    tokenizer_config.json / special_tokens_map.json beside it (what transformers reads), else
    the first of ``conventional`` in the vocabulary. None if neither finds one."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = Path(directory) / name if directory is not None else None
        if path is None or not path.is_file():
            continue
        try:
            token = _map_entry(json.loads(path.read_text(encoding="utf-8")).get(role))
        except (json.JSONDecodeError, AttributeError):
            continue  # not ours to validate; fall back to the conventions
        if token is not None and tok.token_to_id(token) is not None:
            return token
    return next((t for t in conventional if tok.token_to_id(t) is not None), None)


@dataclass
class MaskingConfig:
    mask_prob: float = 0.15  # share of real, non-special tokens selected for prediction
    replace_mask: float = 0.8  # of the selected: replaced by [MASK]
    replace_random: float = 0.1  # of the selected: replaced by a random token; the rest stay

    def __post_init__(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.replace_mask < 0 or self.replace_random < 0 \
                or self.replace_mask + self.replace_random > 1:
            raise ValueError("replace_mask and replace_random must be >= 0 and sum to <= 1")


class Masker:
    """Turns a padded batch into MLM inputs and labels, drawing from a given generator."""

    def __init__(self, vocab_size: int, mask_id: int, special_ids: list[int],
                 cfg: MaskingConfig | None = None):
        self.cfg = cfg or MaskingConfig()
        self.mask_id = mask_id
        self.special_ids = torch.tensor(sorted(set(special_ids) | {mask_id}), dtype=torch.long)
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[self.special_ids] = False
        self.random_ids = keep.nonzero().squeeze(1)  # replacements never insert a special token
        if len(self.random_ids) == 0:
            raise ValueError("the vocabulary has no non-special tokens")

    @classmethod
    def for_tokenizer(cls, tokenizer: TextTokenizer, vocab_size: int,
                      cfg: MaskingConfig | None = None,
                      directory: str | os.PathLike | None = None) -> Masker:
        """The mask token is the one the special-tokens map in ``directory`` names (the
        tokenizer's own directory), else [MASK] or <mask>, whichever the vocabulary has."""
        tok = tokenizer.tokenizer
        mask = find_special_token(tok, "mask_token", MASK_TOKENS, directory)
        if mask is None:
            raise ValueError(f"the tokenizer has no mask token (no mask_token in a special-"
                             f"tokens map, none of {', '.join(MASK_TOKENS)}); masked-LM needs "
                             "one")
        mask_id = tok.token_to_id(mask)
        special = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
        return cls(vocab_size, mask_id, special + [tokenizer.pad_id], cfg)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(B, T) ids and keep-mask -> (masked ids, labels): labels are the original ids at the
        selected positions and IGNORE elsewhere."""
        eligible = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        draw = torch.rand(input_ids.shape, generator=generator)
        selected = eligible & (draw < self.cfg.mask_prob)
        how = torch.rand(input_ids.shape, generator=generator)
        to_mask = selected & (how < self.cfg.replace_mask)
        to_random = selected & (how >= self.cfg.replace_mask) \
            & (how < self.cfg.replace_mask + self.cfg.replace_random)
        random_ids = self.random_ids[
            torch.randint(len(self.random_ids), input_ids.shape, generator=generator)
        ]
        masked = input_ids.clone()
        masked[to_mask] = self.mask_id
        masked[to_random] = random_ids[to_random]
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
        return masked, labels


class MaskedLMHead(nn.Module):
    """dense -> activation -> LayerNorm -> decoder (the token embeddings, transposed) + bias.
    As wide as the token embeddings (E = embedding_size where it differs from d_model, as in
    ELECTRA's generator). Defaults are BERT's: the encoder's activation, every bias; a family
    whose head differs says how (seqenc.checkpoint.heads)."""

    def __init__(self, cfg: EncoderConfig, activation: str | None = None,
                 dense_bias: bool = True, norm_bias: bool = True):
        super().__init__()
        width = cfg.embedding_size or cfg.d_model
        self.dense = nn.Linear(cfg.d_model, width, bias=dense_bias)
        self.activation_name = activation or cfg.activation
        self.activation = activation_fn(self.activation_name)
        self.norm = nn.LayerNorm(width, eps=cfg.layer_norm_eps, bias=norm_bias)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))  # zeros where a head has none

    def forward(self, hidden: Tensor, decoder_weight: Tensor) -> Tensor:
        """hidden (M, D), decoder_weight (V, E) -> logits (M, V)."""
        return self.transform(hidden) @ decoder_weight.T + self.bias

    def transform(self, hidden: Tensor) -> Tensor:
        """The part before the decoder: hidden (M, D) -> (M, E)."""
        return self.norm(self.activation(self.dense(hidden)))


class MaskedLanguageModel(nn.Module):
    """Encoder + MaskedLMHead; the head runs on the selected positions only (cheaper by ~7x)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        self.head = MaskedLMHead(encoder.cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                labels: Tensor) -> tuple[Tensor, Tensor]:
        """-> (logits (M, V), targets (M,)) for the M positions whose label is not IGNORE."""
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state  # (B, T, D)
        selected = labels != IGNORE
        logits = self.head(hidden[selected], self.encoder.embeddings.token.weight)
        return logits, labels[selected]

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> MaskedLanguageModel:
        self.encoder.init_weights(std)
        self.head.dense.weight.normal_(0.0, std)
        self.head.dense.bias.zero_()
        self.head.norm.reset_parameters()
        self.head.bias.zero_()
        return self


class TextMaskedLM:
    """A MaskedLanguageModel with its tokenizer; saves as a sentence encoder plus its head."""

    def __init__(self, model: MaskedLanguageModel, tokenizer: TextTokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> TextMaskedLM:
        from safetensors.torch import load_file

        path = Path(path)
        encoder = SentenceEncoder.from_pretrained(path, device=device)
        model = MaskedLanguageModel(encoder.encoder)
        if not (path / HEAD_FILE).exists():
            raise CheckpointError(f"{path} has no {HEAD_FILE} (not a masked-LM checkpoint)")
        state = load_file(str(path / HEAD_FILE))
        try:
            model.head.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path / HEAD_FILE} does not fit the encoder: {e}") from None
        return cls(model.to(device), encoder.tokenizer)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        out = Path(directory)
        SentenceEncoder(self.model.encoder, self.tokenizer, "mean", False,
                        device=next(self.model.parameters()).device).save_pretrained(out)
        head = {k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()}
        save_file(head, str(out / HEAD_FILE))
        return out
