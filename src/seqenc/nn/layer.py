"""EncoderLayer: self-attention and feed-forward, each with residual, LayerNorm and dropout.

Where the LayerNorm sits is the one switch (``cfg.norm``):
    post     x = LN(x + Dropout(Sublayer(x)))      the paper, BERT
    pre      x = x + Dropout(Sublayer(LN(x)))      GPT-2 and most modern encoders
    res_post x = x + Dropout(LN(Sublayer(x)))      normalise the sub-layer output, then add
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels
from .attention import MultiHeadSelfAttention
from .config import EncoderConfig
from .feedforward import feed_forward
from .plan import Plan, make_plan


def layer_norm(cfg: EncoderConfig) -> nn.LayerNorm:
    """LayerNorm over d_model, with or without its shift beta (cfg.norm_bias)."""
    return nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps, bias=cfg.norm_bias)


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each inside residual + dropout + LayerNorm.

    ``index`` places the layer in its stack: with a window (cfg.attention_window) it decides
    local or global attention, and ModernBERT's layer 0 has no attention LayerNorm.
    """

    def __init__(self, cfg: EncoderConfig, index: int = 0):
        super().__init__()
        self.cfg = cfg
        self.norm = cfg.norm
        self.attention = MultiHeadSelfAttention(cfg, "global" if cfg.is_global(index) else "local")
        skip = index == 0 and not cfg.first_attention_norm  # the embeddings are normalised
        self.attention_norm = nn.Identity() if skip else layer_norm(cfg)
        self.feed_forward = feed_forward(cfg)
        self.feed_forward_norm = layer_norm(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        need_weights: bool = False,
        *,
        plan: Plan | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, T, D); attention_mask (B, T) with True/1 = real token.

        Returns (B, T, D), or ((B, T, D), weights (B, H, T, T)) when weights are asked for.
        Inside an Encoder, ``plan`` says how the batch runs (and asks for the weights); with
        a packing plan x and the result are the (N, D) real tokens only: every step here but
        attention is position-wise.
        """
        if plan is None:
            if attention_mask is not None:
                check_mask(attention_mask, x.shape[:2])
            plan = make_plan(self.cfg, x, attention_mask, training=self.training,
                             need_weights=need_weights, pack=False)
        if plan.fused_layers:
            return self.fused_forward(x, plan)
        weights = None

        def self_attention(h: Tensor) -> Tensor:
            nonlocal weights
            out, weights = self.attention(h, plan=plan)
            return out

        if self.norm == "post":
            x = self.attention_norm(x + self.dropout(self_attention(x)))
            x = self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))
        elif self.norm == "pre":
            x = x + self.dropout(self_attention(self.attention_norm(x)))
            x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        else:  # res_post
            x = x + self.dropout(self.attention_norm(self_attention(x)))
            x = x + self.dropout(self.feed_forward_norm(self.feed_forward(x)))
        return (x, weights) if plan.need_weights else x

    def fused_forward(self, x: Tensor, plan: Plan) -> Tensor:
        """The same post-norm layer through our CPU kernels (nn/kernels.py): packed (N, D)
        rows, or a (B, T, D) batch without padding."""
        rows = x.reshape(-1, x.shape[-1])  # (N, D) or (B*T, D)
        y = kernels.fused_post_norm_layer(rows, *plan.spans, self.cfg.n_heads,
                                          self.cfg.layer_norm_eps, self.post_norm_weights())
        return y.view(x.shape)

    def post_norm_weights(self) -> kernels.PostNormWeights:
        """This layer's tensors in the order the fused kernels take them."""
        attention, ff = self.attention, self.feed_forward
        return kernels.PostNormWeights(
            _weight(attention.qkv), attention.qkv.bias, _weight(attention.out),
            attention.out.bias, self.attention_norm.weight, self.attention_norm.bias,
            _weight(ff.up), ff.up.bias, _weight(ff.down), ff.down.bias,
            self.feed_forward_norm.weight, self.feed_forward_norm.bias)

    @classmethod
    def from_torch(
        cls, module: nn.Module, norm: str | None = None, activation: str | None = None
    ) -> EncoderLayer:
        """Build an equal layer from ``torch.nn.TransformerEncoderLayer`` or a tutorial-style layer.

        The module needs ``self_attn`` (an ``nn.MultiheadAttention``), ``linear1``/``linear2``
        and ``norm1``/``norm2``. ``norm`` defaults to ``module.norm_first`` ("pre"/"post");
        layers without that attribute must say it (tutorial layers: ``norm="res_post"``).
        """
        for name in ("self_attn", "linear1", "linear2", "norm1", "norm2"):
            if not hasattr(module, name):
                raise ValueError(f"cannot convert {type(module).__name__}: it has no '{name}'")
        attn: nn.MultiheadAttention = module.self_attn
        if not isinstance(attn, nn.MultiheadAttention):
            raise ValueError("self_attn must be a torch.nn.MultiheadAttention")
        if attn.in_proj_weight is None:
            raise ValueError(
                "self_attn with separate q/k/v dimensions (kdim/vdim) is not supported"
            )
        if norm is None:
            if not hasattr(module, "norm_first"):
                raise ValueError(
                    f"{type(module).__name__} has no norm_first: pass norm='post', 'pre' or "
                    "'res_post'"
                )
            norm = "pre" if module.norm_first else "post"
        if module.norm1.eps != module.norm2.eps:
            raise ValueError(
                f"norm1.eps ({module.norm1.eps}) and norm2.eps ({module.norm2.eps}) differ; "
                "EncoderConfig has one layer_norm_eps"
            )
        activation = activation or _infer_activation(module)
        linears = (attn.out_proj, module.linear1, module.linear2)
        dropout = getattr(module, "dropout", None)
        cfg = EncoderConfig(
            vocab_size=1,
            pad_token_id=0,
            d_model=attn.embed_dim,
            n_heads=attn.num_heads,
            n_layers=1,
            d_ff=module.linear1.out_features,
            dropout=dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
            attention_dropout=attn.dropout,
            activation=activation,
            layer_norm_eps=module.norm1.eps,
            norm=norm,
            # bias=False layers (torch >= 2.1) drop every bias; a missing one equals a zero one
            bias=attn.in_proj_bias is not None or any(m.bias is not None for m in linears),
        )
        layer = cls(cfg)
        ours = {
            "attention.qkv.weight": attn.in_proj_weight,
            "attention.qkv.bias": attn.in_proj_bias,
            "attention.out.weight": attn.out_proj.weight,
            "attention.out.bias": attn.out_proj.bias,
            "feed_forward.up.weight": module.linear1.weight,
            "feed_forward.up.bias": module.linear1.bias,
            "feed_forward.down.weight": module.linear2.weight,
            "feed_forward.down.bias": module.linear2.bias,
            "attention_norm.weight": module.norm1.weight,
            "attention_norm.bias": module.norm1.bias,
            "feed_forward_norm.weight": module.norm2.weight,
            "feed_forward_norm.bias": module.norm2.bias,
        }
        shapes = {k: v.shape for k, v in layer.state_dict().items()}
        state = {
            k: v.detach().clone() if v is not None else torch.zeros(shapes[k])
            for k, v in ours.items()
            if k in shapes  # without biases (cfg.bias False) their keys are absent
        }
        layer.load_state_dict(state, strict=True)
        return layer.train(module.training)


def _weight(linear: nn.Module):
    """What the fused layer multiplies by: an nn.Linear's weight, or the module itself when it
    brings its own matmul (seqenc.int8.Int8Linear)."""
    return linear.weight if isinstance(linear, nn.Linear) else linear


def _infer_activation(module: nn.Module) -> str:
    """The activation name for ``module.activation`` (relu when a tutorial layer has none).

    Reads the callable itself, not torch's ``activation_relu_or_gelu`` flag: that flag is 2 for
    ``nn.GELU(approximate="tanh")`` too, and torch's slow path (the module's own definition)
    does use tanh there.
    """
    act = getattr(module, "activation", F.relu)
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu:
        return "gelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    raise ValueError(
        f"cannot infer the activation {act!r}: pass activation='relu'|'gelu'|'gelu_tanh'"
    )


def check_mask(attention_mask: Tensor, expected: torch.Size | tuple[int, int]) -> None:
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != tuple(expected):
        raise ValueError(
            f"attention_mask must have shape (batch, seq_len) = {tuple(expected)}, "
            f"got {tuple(attention_mask.shape)}"
        )
