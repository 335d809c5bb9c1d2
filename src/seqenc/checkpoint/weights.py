"""Tensors between a checkpoint's names and ours, through a Family's name table.

Reading and writing go through the same table, so a checkpoint seqenc writes is one that
transformers (and seqenc) can read back. A checkpoint that does not fit is refused with every
missing, unexpected and mis-shaped tensor listed at once: never a half-loaded model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .families import CheckpointError, Family, Swapped

_LAYER_KEY = re.compile(r"layers\.(\d+)\.(.+)")
# Old TensorFlow-converted checkpoints name LayerNorm parameters gamma/beta.
_LEGACY = {".gamma": ".weight", ".beta": ".bias"}


def name_map(family: Family, ours: list[str]) -> dict[str, str | tuple[str, ...] | Swapped]:
    """Each of our parameter names -> the checkpoint's name (or the names stacked into it).

    Raises CheckpointError for a parameter of ours the family has no name for (a component
    the family does not have).
    """
    names: dict[str, str | tuple[str, ...]] = {}
    unnamed = []
    for key in ours:
        match = _LAYER_KEY.fullmatch(key)
        table, rest, i = ((family.layer, match.group(2), match.group(1)) if match
                          else (family.top, key, None))
        module, _, param = rest.rpartition(".")
        theirs = table.get(module)
        if theirs is None:
            unnamed.append(key)
            continue
        if isinstance(theirs, tuple):
            names[key] = tuple(f"{t.format(i=i)}.{param}" for t in theirs)
        elif isinstance(theirs, Swapped):
            names[key] = Swapped(f"{theirs.name.format(i=i)}.{param}")
        else:
            names[key] = f"{theirs.format(i=i)}.{param}"
    if unnamed:
        raise CheckpointError(
            f"the {family.name} family has no checkpoint names for: {', '.join(unnamed)}"
        )
    return names


def from_state_dict(
    theirs: dict[str, Tensor], family: Family, expected: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Checkpoint tensors -> our state dict. ``expected`` is our model's state dict (shapes).

    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor at once.
    """
    theirs = _strip_prefix(_rename_legacy(theirs), family)
    ours: dict[str, Tensor] = {}
    missing, misshaped = [], []
    used: set[str] = set()
    for our_name, names in name_map(family, list(expected)).items():
        swapped = isinstance(names, Swapped)
        parts = names if isinstance(names, tuple) else (names.name,) if swapped else (names,)
        absent = [p for p in parts if p not in theirs]
        if absent:
            missing.extend(absent)
            continue
        used.update(parts)
        shapes = [tuple(theirs[p].shape) for p in parts]
        want = tuple(expected[our_name].shape)
        if len(parts) > 1 and len(set(shapes)) != 1:
            misshaped.append(" + ".join(f"{p} {s}" for p, s in zip(parts, shapes, strict=True))
                             + f": cannot stack into model {want}")
            continue
        tensor = torch.cat([theirs[p] for p in parts]) if len(parts) > 1 else theirs[parts[0]]
        if swapped:
            tensor = _swap_halves(tensor)
        if tuple(tensor.shape) != want:
            misshaped.append(f"{' + '.join(parts)}: checkpoint {tuple(tensor.shape)}, model {want}")
            continue
        ours[our_name] = tensor
    unexpected = sorted(k for k in theirs if k not in used and not k.startswith(family.ignored))
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if misshaped:
        problems.append("mis-shaped: " + "; ".join(misshaped))
    if problems:
        raise CheckpointError(
            f"checkpoint does not match the {family.name} model its config.json describes.\n  "
            + "\n  ".join(problems)
        )
    return ours


def to_state_dict(ours: dict[str, Tensor], family: Family) -> dict[str, Tensor]:
    """Our state dict -> the family's names (qkv split back into its three projections)."""
    theirs: dict[str, Tensor] = {}
    for our_name, names in name_map(family, list(ours)).items():
        tensor = ours[our_name]
        if isinstance(names, tuple):
            for name, part in zip(names, tensor.chunk(len(names)), strict=True):
                theirs[name] = part.contiguous()
        elif isinstance(names, Swapped):
            theirs[names.name] = _swap_halves(tensor).contiguous()
        else:
            theirs[names] = tensor.contiguous()
    return theirs


def _swap_halves(tensor: Tensor) -> Tensor:
    first, second = tensor.chunk(2)
    return torch.cat([second, first])


def _rename_legacy(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in tensors.items():
        for old, new in _LEGACY.items():
            if key.endswith(old) and "LayerNorm" in key:
                key = key[: -len(old)] + new
        out[key] = value
    return out


def _strip_prefix(tensors: dict[str, Tensor], family: Family) -> dict[str, Tensor]:
    """Drop the task model's prefix ("bert.", "roberta.", ...) in front of the encoder names."""
    first = next(iter(family.top.values())).split(".")[0] + "."  # e.g. "embeddings."
    for prefix in family.prefixes:
        if any(k.startswith(prefix + first) for k in tensors):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}
    return tensors


def read_weights(directory: Path) -> dict[str, Tensor]:
    """model.safetensors, else pytorch_model.bin loaded with weights_only=True."""
    safetensors_path = directory / "model.safetensors"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        return load_file(str(safetensors_path))
    bin_path = directory / "pytorch_model.bin"
    if bin_path.exists():
        return torch.load(str(bin_path), map_location="cpu", weights_only=True)
    raise CheckpointError(f"{directory} has neither model.safetensors nor pytorch_model.bin")


def read_json(path: Path, expect: type = dict,
              error: type[Exception] = CheckpointError) -> Any:
    """A JSON file holding an ``expect`` (an object {...}, or list for modules.json); an
    ``error`` naming the file (and line) if it is missing, not JSON, or holds something else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, expect):
        kinds = {dict: "a JSON object {...}", list: "a JSON array [...]", str: "a string",
                 bool: "a boolean", type(None): "null"}
        raise error(f"{path}: expected {kinds[expect]}, got {kinds.get(type(data), 'a number')}")
    return data


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
