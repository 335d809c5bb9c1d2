"""Encoder: embeddings -> N encoder layers -> optional final LayerNorm."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import EncoderConfig
from .embeddings import Embeddings
from .layer import EncoderLayer, check_mask, layer_norm
from .plan import Plan, make_plan
from .positions import RelativePositionBias


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor  # (B, T, D); at inference, zeros at padding positions
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + each layer: N+1 x (B, T, D)
    attentions: tuple[Tensor, ...] | None = None  # each layer: N x (B, H, T, T)


class Encoder(nn.Module):
    """Embeddings, then cfg.n_layers EncoderLayers, then an optional final LayerNorm.

    MPNet's relative position bias is one table for the whole stack, so it lives here.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.relative_bias = (
            RelativePositionBias(cfg) if cfg.relative_positions == "buckets" else None
        )
        self.layers = nn.ModuleList(EncoderLayer(cfg, i) for i in range(cfg.n_layers))
        self.final_norm = layer_norm(cfg) if cfg.final_norm else None

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
        plan = self.plan(x, attention_mask, output_attentions)
        if plan.packing is not None:
            x = plan.packing.pack(x)  # (N, D)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            if output_attentions:
                x, weights = layer(x, plan=plan)
                attentions.append(weights)
            else:
                x = layer(x, plan=plan)
            if output_hidden_states:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:
                hidden_states[-1] = x
        if plan.packing is not None:
            x = plan.packing.unpack(x)  # (B, T, D)
            if hidden_states is not None:
                hidden_states = [plan.packing.unpack(h) for h in hidden_states]
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def plan(self, x: Tensor, attention_mask: Tensor | None, need_weights: bool) -> Plan:
        """How this batch runs (plan.py): made once, read by every layer."""
        position_bias = None
        if self.relative_bias is not None:
            position_bias = self.relative_bias(x.shape[1])  # (1, H, T, T)
        return make_plan(self.cfg, x, attention_mask, training=self.training,
                         need_weights=need_weights, position_bias=position_bias)

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
            offset = ("" if self.cfg.longest_sequence == self.cfg.max_positions else
                      f" (positions start at pad_token_id + 1: at most "
                      f"{self.cfg.longest_sequence})")
            raise ValueError(
                f"input_ids has {input_ids.size(1)} positions but max_positions is "
                f"{self.cfg.max_positions}{offset}"
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
                if module.bias is not None:
                    module.bias.zero_()
        return self
