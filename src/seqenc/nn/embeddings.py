"""Embeddings: token vectors plus position (and optional token-type) vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig


def sinusoidal_positions(n_positions: int, d_model: int) -> Tensor:
    """The paper's PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): (P, D)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )  # (ceil(D/2),)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table.float()


def offset_position_ids(input_ids: Tensor, pad_token_id: int) -> Tensor:
    """RoBERTa's numbering: real tokens pad_token_id + 1, + 2, ...; padding tokens pad_token_id.

    input_ids (B, T) -> (B, T). Counts only non-padding ids, as fairseq did.
    """
    real = (input_ids != pad_token_id).long()  # (B, T)
    return torch.cumsum(real, dim=1) * real + pad_token_id


class Embeddings(nn.Module):
    """token + position (+ token type), then LayerNorm and dropout as configured.

    ``learned_offset`` positions (RoBERTa, MPNet) are numbered from pad_token_id + 1. With
    ``cfg.embedding_size`` (ELECTRA) the sum is that narrower width E and a linear layer
    projects it up to D after the LayerNorm.
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
        self.norm = nn.LayerNorm(E, eps=cfg.layer_norm_eps) if cfg.embedding_norm else None
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
