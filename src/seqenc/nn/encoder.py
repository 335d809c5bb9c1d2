"""Encoder: embeddings -> N encoder layers -> optional final LayerNorm."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import attention_bias
from .config import EncoderConfig
from .embeddings import Embeddings
from .layer import EncoderLayer, check_mask
from .packing import Packing, worth_packing


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor  # (B, T, D); at inference, zeros at padding positions
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + each layer: N+1 x (B, T, D)
    attentions: tuple[Tensor, ...] | None = None  # each layer: N x (B, H, T, T)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.final_norm = (
            nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.final_norm else None
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """input_ids (B, T), attention_mask (B, T) True/1 = real token.

        At inference, a padded batch runs packed (see packing.py): the layers see only real
        tokens and the outputs come back padded, with zeros at padding positions.
        """
        self.check_inputs(input_ids, attention_mask, token_type_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        if attention_mask is not None and not output_attentions and bool(attention_mask.all()):
            attention_mask = None  # nothing to mask: kernels may skip the bias altogether
        bias = attention_bias(attention_mask, x.dtype)  # (B, 1, 1, T) or None
        packing = None
        if not self.training and not output_attentions and worth_packing(attention_mask):
            packing = Packing.from_mask(attention_mask)
            x = packing.pack(x)  # (N, D)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            if output_attentions:
                x, weights = layer(x, need_weights=True, bias=bias)
                attentions.append(weights)
            else:
                x = layer(x, bias=bias, packing=packing)
            if output_hidden_states:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:
                hidden_states[-1] = x
        if packing is not None:
            x = packing.unpack(x)  # (B, T, D)
            if hidden_states is not None:
                hidden_states = [packing.unpack(h) for h in hidden_states]
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def check_inputs(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
    ) -> None:
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}"
            )
        if input_ids.dtype.is_floating_point:
            raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        if input_ids.size(1) > self.cfg.longest_sequence and self.cfg.position_encoding != "none":
            raise ValueError(
                f"input_ids has {input_ids.size(1)} positions but max_positions is "
                f"{self.cfg.max_positions}"
                + (" less pad_token_id + 1" if self.cfg.position_encoding == "learned_offset"
                   else "")
            )
        if input_ids.numel():
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.cfg.vocab_size:
                bad = high if high >= self.cfg.vocab_size else low
                raise ValueError(
                    f"input_ids contains id {bad}, outside [0, vocab_size={self.cfg.vocab_size})"
                )
        if attention_mask is not None:
            check_mask(attention_mask, input_ids.shape)
        if token_type_ids is not None:
            if tuple(token_type_ids.shape) != tuple(input_ids.shape):
                raise ValueError(
                    f"token_type_ids must have shape {tuple(input_ids.shape)}, "
                    f"got {tuple(token_type_ids.shape)}"
                )
            if self.cfg.type_vocab_size == 0:
                raise ValueError("token_type_ids given but EncoderConfig.type_vocab_size is 0")
            if token_type_ids.numel():
                low, high = int(token_type_ids.min()), int(token_type_ids.max())
                if low < 0 or high >= self.cfg.type_vocab_size:
                    raise ValueError(
                        f"token_type_ids contains {low if low < 0 else high}, outside "
                        f"[0, type_vocab_size={self.cfg.type_vocab_size})"
                    )

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> Encoder:
        """BERT's initialisation: normal(0, std) for linear/embedding weights, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        return self
