"""TrainConfig: the optimisation recipe, and sizes.json files read into an EncoderConfig."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from seqenc.checkpoint import read_json
from seqenc.choices import DEVICES, DTYPES
from seqenc.nn.config import EncoderConfig

# Fields a resumed run may change without changing the weights it produces.
RESUMABLE_CHANGES = ("log_every", "save_every", "eval_every", "patience", "device")


class ConfigError(ValueError):
    """A bad configuration value or file; the message names the file and field."""


@dataclass
class TrainConfig:
    """How to train. ``batch_size`` is the global batch per forward pass: with N processes each
    sees batch_size / N examples, so the same command gives the same updates on 1 or N."""

    epochs: int = 3  # passes over the training data (ignored when max_steps is set)
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 32  # examples per forward pass, summed over processes
    grad_accum: int = 1  # forward passes per optimizer step
    lr: float = 5e-5  # peak learning rate, reached at the end of warm-up
    head_lr: float | None = None  # peak learning rate of the task head (``head.*``); None: lr
    weight_decay: float = 0.01  # AdamW decoupled decay; never on biases or LayerNorm
    warmup_ratio: float = 0.06  # fraction of the steps spent warming up linearly from 0
    max_grad_norm: float = 1.0  # clip the global gradient norm; 0 = no clipping
    seed: int = 0  # model init, data order, dropout and masking all follow from it
    dtype: str = "float32"  # float32 | bfloat16 (autocast; weights and optimizer stay fp32)
    patience: int | None = None  # stop after this many evaluations without improvement
    eval_every: int | None = None  # evaluate every N steps; None = at the end of each epoch
    save_every: int | None = None  # checkpoint every N steps; None = at every evaluation
    log_every: int = 10  # steps between training-loss lines in metrics.jsonl
    group_by_length: bool = True  # batch texts of similar length: less padding, same data
    device: str = "cpu"  # cpu | cuda | auto

    def __post_init__(self) -> None:
        positive = ["epochs", "batch_size", "grad_accum", "log_every"]
        optional_positive = ["max_steps", "patience", "eval_every", "save_every"]
        for name in positive + optional_positive:
            value = getattr(self, name)
            if value is None and name in optional_positive:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.head_lr is not None and (not _is_number(self.head_lr) or self.head_lr <= 0
                                         or not math.isfinite(self.head_lr)):
            raise ConfigError(f"head_lr must be a finite number > 0, got {self.head_lr!r}")
        if not _is_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields that differ and would change the trajectory of a resumed run."""
        return [
            f"{f.name}: checkpoint {getattr(other, f.name)!r}, now {getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)
        ]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_encoder_config(path: str | Path, **defaults: Any) -> EncoderConfig:
    """Read a sizes.json of EncoderConfig fields. ``defaults`` fill fields the file leaves out
    (e.g. vocab_size from the tokenizer). Every problem is a ConfigError naming the file."""
    path = Path(path)
    data = read_json(path, dict, ConfigError)
    known = {f.name: f for f in fields(EncoderConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"EncoderConfig fields are {', '.join(known)}"
        )
    for name, value in data.items():
        default = getattr(EncoderConfig, name)
        # Catch "384" or true where a number is meant before EncoderConfig sees it, so the
        # message can say which file and field.
        if _is_number(default) and not _is_number(value):
            raise ConfigError(
                f"{path}: field {name!r} must be a number, got {json.dumps(value)}"
            )
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{path}: field {name!r} must be an integer, got {value}")
            data[name] = int(value)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{path}: field {name!r} must be true or false, got {value!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{path}: field {name!r} must be a string, got {value!r}")
    try:
        return EncoderConfig(**{**defaults, **data})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
