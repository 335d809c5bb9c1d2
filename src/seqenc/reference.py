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


ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


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
    elif cfg.position_encoding == "learned_offset":  # RoBERTa: real tokens pad+1, pad+2, ...
        real = (input_ids != cfg.pad_token_id).astype(np.int64)
        x = x + sd["embeddings.position.weight"][np.cumsum(real, axis=1) * real
                                                 + cfg.pad_token_id]
    elif cfg.position_encoding == "sinusoidal":
        x = x + sinusoidal_positions(T, cfg.d_model)
    if cfg.type_vocab_size > 0:
        segments = 0 if token_type_ids is None else np.asarray(token_type_ids)
        x = x + sd["embeddings.token_type.weight"][segments]
    if cfg.embedding_norm:
        gamma, beta = sd["embeddings.norm.weight"], sd["embeddings.norm.bias"]
        x = layer_norm(x, gamma, beta, cfg.layer_norm_eps)
    if cfg.embedding_size:  # ELECTRA: narrower embeddings projected up to d_model
        x = linear(x, sd, "embeddings.project")
    return x


def self_attention(
    x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig, keep: np.ndarray
) -> np.ndarray:
    """Multi-head attention: split Q/K/V into heads, softmax(QK^T/sqrt(d_k)) V, merge, project."""
    B, T, D = x.shape
    H, hd = cfg.n_heads, cfg.head_dim
    q, k, v = np.split(linear(x, sd, f"{prefix}.qkv"), 3, axis=-1)  # 3 x (B, T, D)
    q, k, v = (t.reshape(B, T, H, hd).transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, H, T, hd)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)  # (B, H, T, T)
    scores = np.where(keep[:, None, None, :], scores, -np.inf)
    # a sequence with no real token at all attends uniformly (as the torch version does)
    scores = np.where(keep.any(axis=1)[:, None, None, None], scores, 0.0)
    heads = softmax(scores) @ v  # (B, H, T, hd)
    merged = heads.transpose(0, 2, 1, 3).reshape(B, T, D)
    return linear(merged, sd, f"{prefix}.out")


def feed_forward(x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig) -> np.ndarray:
    hidden = ACTIVATIONS[cfg.activation](linear(x, sd, f"{prefix}.up"))
    return linear(hidden, sd, f"{prefix}.down")


def encoder_layer(
    x: np.ndarray, sd: dict, prefix: str, cfg: EncoderConfig, keep: np.ndarray
) -> np.ndarray:
    def norm(h: np.ndarray, which: str) -> np.ndarray:
        return layer_norm(h, sd[f"{prefix}.{which}.weight"], sd[f"{prefix}.{which}.bias"],
                          cfg.layer_norm_eps)

    def attend(h: np.ndarray) -> np.ndarray:
        return self_attention(h, sd, f"{prefix}.attention", cfg, keep)

    def ffn(h: np.ndarray) -> np.ndarray:
        return feed_forward(h, sd, f"{prefix}.feed_forward", cfg)

    if cfg.norm == "post":
        x = norm(x + attend(x), "attention_norm")
        return norm(x + ffn(x), "feed_forward_norm")
    if cfg.norm == "pre":
        x = x + attend(norm(x, "attention_norm"))
        return x + ffn(norm(x, "feed_forward_norm"))
    x = x + norm(attend(x), "attention_norm")  # res_post
    return x + norm(ffn(x), "feed_forward_norm")


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
    for i in range(cfg.n_layers):
        x = encoder_layer(x, sd, f"layers.{i}", cfg, keep)
    if cfg.final_norm:
        x = layer_norm(x, sd["final_norm.weight"], sd["final_norm.bias"], cfg.layer_norm_eps)
    return x
