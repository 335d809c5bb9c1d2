"""Embeddings: token vectors plus absolute position (and optional token-type) vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig
from .positions import offset_position_ids, sinusoidal_positions

__all__ = ["Embeddings", "sinusoidal_positions"]


class Embeddings(nn.Module):
    """token + position (+ token type), then LayerNorm and dropout as configured.

    Positions (cfg.position_encoding, see positions.py): a learned table (BERT), the same
    numbered from pad_token_id + 1 (RoBERTa), fixed sinusoids, or none (rotary/relative
    models put positions inside attention instead).
    With ``cfg.embedding_size`` (ELECTRA) the sum is that narrower width E and a linear
    layer projects it up to D after the LayerNorm.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        E = cfg.embedding_size or cfg.d_model
        self.token = nn.Embedding(cfg.vocab_size, E, padding_idx=None)
        if cfg.position_encoding in ("learned", "learned_offset"):
            self.position = nn.Embedding(cfg.max_positions, E)
        elif cfg.position_encoding == "sinusoidal":
            self.register_buffer(
                "sinusoid", sinusoidal_positions(cfg.max_positions, E), persistent=False
            )
        self.token_type = (
            nn.Embedding(cfg.type_vocab_size, E) if cfg.type_vocab_size > 0 else None
        )
        self.norm = (
            nn.LayerNorm(E, eps=cfg.layer_norm_eps, bias=cfg.norm_bias)
            if cfg.embedding_norm else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.scale = math.sqrt(E) if cfg.scale_embeddings else 1.0
        self.project = nn.Linear(E, cfg.d_model) if E != cfg.d_model else None

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """input_ids (B, T) -> (B, T, D)."""
        T = input_ids.size(1)
        x = self.token(input_ids)  # (B, T, D)
        if self.scale != 1.0:
            x = x * self.scale
        if position_ids is None and self.cfg.position_encoding == "learned_offset":
            position_ids = offset_position_ids(input_ids, self.cfg.pad_token_id)  # (B, T)
        elif position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
        if self.cfg.position_encoding in ("learned", "learned_offset"):
            x = x + self.position(position_ids)
        elif self.cfg.position_encoding == "sinusoidal":
            x = x + self.sinusoid[position_ids].to(x.dtype)
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.weight[0].to(x.dtype)  # all segment 0
            else:
                x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        if self.project is not None:
            x = self.project(x)  # (B, T, E) -> (B, T, D)
        return x
