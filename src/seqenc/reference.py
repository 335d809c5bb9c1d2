"""The encoder forward pass in plain NumPy (float64): the textbook version, for checking.

It reads the same state dict as ``seqenc.nn.Encoder`` (names from ``Encoder.state_dict()``,
values as NumPy arrays) and follows the same maths, one function per concept.
"""

from __future__ import annotations

import math

import numpy as np

from .nn.config import EncoderConfig

_erfc = np.frompyfunc(math.erfc, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x), the exact (erf) form."""
    return 0.5 * x * _erfc(-x / math.sqrt(2.0)).astype(np.float64)  # erfc: exact in the left tail


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) (Swish-1)."""
    return x / (1.0 + np.exp(-x))


ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu}


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None,
               eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance).

    beta None: a LayerNorm without a shift (ModernBERT)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * gamma
    return y if beta is None else y + beta


def norm(x: np.ndarray, sd: dict, name: str, cfg: EncoderConfig) -> np.ndarray:
    return layer_norm(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), cfg.layer_norm_eps)


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def linear(x: np.ndarray, sd: dict, name: str) -> np.ndarray:
    y = x @ sd[f"{name}.weight"].T
    bias = sd.get(f"{name}.bias")
    return y if bias is None else y + bias


def sinusoidal_positions(n_positions: int, d_model: int) -> np.ndarray:
    pe = np.zeros((n_positions, d_model))
    for pos in range(n_positions):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            pe[pos, i] = math.sin(angle)
            if i + 1 < d_model:
                pe[pos, i + 1] = math.cos(angle)
    return pe


def offset_positions(input_ids: np.ndarray, pad: int) -> np.ndarray:
    """RoBERTa: the k-th non-padding token of a row is at position pad + k; padding at pad."""
    positions = np.full(input_ids.shape, pad)
    for b, row in enumerate(input_ids):
        k = 0
        for t, token in enumerate(row):
            if token != pad:
                k += 1
                positions[b, t] = pad + k
    return positions


def rotary(x: np.ndarray, base: float, interleaved: bool) -> np.ndarray:
    """Turn each feature pair of x (B, H, T, hd) at position t by the angle t * base^(-2i/hd).

    The pairs are (i, i + hd/2) (rotate-half layout) or (2i, 2i + 1) (interleaved).
    """
    T, hd = x.shape[-2], x.shape[-1]
    out = x.copy()
    for i in range(hd // 2):
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + hd // 2)
        angle = np.arange(T) * base ** (-2.0 * i / hd)  # (T,)
        cos, sin = np.cos(angle), np.sin(angle)
        out[..., a] = x[..., a] * cos - x[..., b] * sin
        out[..., b] = x[..., b] * cos + x[..., a] * sin
    return out


def relative_bucket(distance: int, n_buckets: int, max_distance: int) -> int:
    """T5/MPNet bucket of the distance j - i (bidirectional), one number at a time."""
    half = n_buckets // 2
    bucket = half if distance > 0 else 0
    n = abs(distance)
    exact = half // 2
    if n < exact:
        return bucket + n
    large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
    return bucket + min(large, half - 1)


def relative_bias(sd: dict, cfg: EncoderConfig, T: int) -> np.ndarray:
    """(H, T, T): the learned per-head bias of each (query i, key j)'s bucket."""
    table = sd["relative_bias.buckets.weight"]  # (n_buckets, H)
    buckets = np.array([[relative_bucket(j - i, cfg.relative_buckets, cfg.relative_max_distance)
                         for j in range(T)] for i in range(T)])
    return table[buckets].transpose(2, 0, 1)


def embeddings(
    sd: dict, cfg: EncoderConfig, input_ids: np.ndarray, token_type_ids: np.ndarray | None = None
) -> np.ndarray:
    """token + position (+ segment, default 0) embeddings, then LayerNorm: (B, T) -> (B, T, D)."""
    T = input_ids.shape[1]
    x = sd["embeddings.token.weight"][input_ids]
    if cfg.scale_embeddings:
        x = x * math.sqrt(x.shape[-1])  # the embedding width (d_model unless embedding_size)
    if cfg.position_encoding == "learned":
        x = x + sd["embeddings.position.weight"][:T]
    elif cfg.position_encoding == "learned_offset":
        x = x + sd["embeddings.position.weight"][offset_positions(input_ids, cfg.pad_token_id)]
    elif cfg.position_encoding == "sinusoidal":
        x = x + sinusoidal_positions(T, cfg.d_model)
    if cfg.type_vocab_size > 0:
        segments = 0 if token_type_ids is None else np.asarray(token_type_ids)
        x = x + sd["embeddings.token_type.weight"][segments]
    if cfg.embedding_norm:
        x = norm(x, sd, "embeddings.norm", cfg)
    if cfg.embedding_size:  # ELECTRA: narrower embeddings projected up to d_model
        x = linear(x, sd, "embeddings.project")
    return x


def self_attention(
    x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig, keep: np.ndarray,
    window: int = 0, position_bias: np.ndarray | None = None, base: float = 10000.0,
) -> np.ndarray:
    """Multi-head attention: split Q/K/V into heads, softmax(QK^T/sqrt(d_k)) V, merge, project.

    window > 0: a query sees only keys within window // 2 positions; position_bias (H, T, T)
    is added to the scores; rotary configs turn queries and keys by ``base``'s angles.
    """
    B, T, D = x.shape
    H, hd = cfg.n_heads, cfg.head_dim
    q, k, v = np.split(linear(x, sd, f"{prefix}.qkv"), 3, axis=-1)  # 3 x (B, T, D)
    q, k, v = (t.reshape(B, T, H, hd).transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, H, T, hd)
    if cfg.relative_positions == "rotary":
        q, k = rotary(q, base, cfg.rotary_interleaved), rotary(k, base, cfg.rotary_interleaved)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)  # (B, H, T, T)
    if position_bias is not None:
        scores = scores + position_bias
    allowed = np.broadcast_to(keep[:, None, None, :], scores.shape)
    if window:
        distance = np.abs(np.arange(T)[None, :] - np.arange(T)[:, None])  # (T, T)
        allowed = allowed & (distance <= window // 2)
    scores = np.where(allowed, scores, -np.inf)
    # a query that may see no key at all attends uniformly (as the torch version does)
    scores = np.where(allowed.any(axis=-1, keepdims=True), scores, 0.0)
    heads = softmax(scores) @ v  # (B, H, T, hd)
    merged = heads.transpose(0, 2, 1, 3).reshape(B, T, D)
    return linear(merged, sd, f"{prefix}.out")


def feed_forward(x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig) -> np.ndarray:
    """mlp: down(act(up x)); glu: down(act(gate x) * (value x)), gate and value the two
    halves of the ``up`` projection."""
    act = ACTIVATIONS[cfg.activation]
    hidden = linear(x, sd, f"{prefix}.up")
    if cfg.feed_forward == "glu":
        gate, value = np.split(hidden, 2, axis=-1)
        hidden = act(gate) * value
    else:
        hidden = act(hidden)
    return linear(hidden, sd, f"{prefix}.down")


def encoder_layer(
    x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig, keep: np.ndarray,
    index: int = 0, position_bias: np.ndarray | None = None,
) -> np.ndarray:
    local = cfg.attention_window > 0 and index % cfg.global_every != 0
    base = cfg.rotary_local_base if local and cfg.rotary_local_base else cfg.rotary_base

    def attention_norm(h: np.ndarray) -> np.ndarray:
        if index == 0 and not cfg.first_attention_norm:
            return h  # ModernBERT: the embeddings are normalised already
        return norm(h, sd, f"{prefix}.attention_norm", cfg)

    def ff_norm(h: np.ndarray) -> np.ndarray:
        return norm(h, sd, f"{prefix}.feed_forward_norm", cfg)

    def attend(h: np.ndarray) -> np.ndarray:
        return self_attention(h, sd, f"{prefix}.attention", cfg, keep,
                              cfg.attention_window if local else 0, position_bias, base)

    def ffn(h: np.ndarray) -> np.ndarray:
        return feed_forward(h, sd, f"{prefix}.feed_forward", cfg)

    if cfg.norm == "post":
        x = attention_norm(x + attend(x))
        return ff_norm(x + ffn(x))
    if cfg.norm == "pre":
        x = x + attend(attention_norm(x))
        return x + ffn(ff_norm(x))
    x = x + attention_norm(attend(x))  # res_post
    return x + ff_norm(ffn(x))


def encoder_forward(
    state_dict: dict[str, np.ndarray],
    cfg: EncoderConfig,
    input_ids: np.ndarray,
    attention_mask: np.ndarray | None = None,
    token_type_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Last hidden state (B, T, D) as float64 for input_ids (B, T) and keep-mask (B, T)."""
    sd = {k: np.asarray(v, dtype=np.float64) for k, v in state_dict.items()}
    input_ids = np.asarray(input_ids)
    keep = (np.ones(input_ids.shape, dtype=bool) if attention_mask is None
            else np.asarray(attention_mask).astype(bool))
    x = embeddings(sd, cfg, input_ids, token_type_ids)
    position_bias = None
    if cfg.relative_positions == "buckets":
        position_bias = relative_bias(sd, cfg, input_ids.shape[1])  # (H, T, T), every layer
    for i in range(cfg.n_layers):
        x = encoder_layer(x, sd, f"layers.{i}", cfg, keep, i, position_bias)
    if cfg.final_norm:
        x = norm(x, sd, "final_norm", cfg)
    return x
