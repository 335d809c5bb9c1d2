"""Atomic checkpoint directories, the resumable trainer state, and whether a saved one
continues the run asked for (``load_resumable``).

A checkpoint is written into a fresh temporary directory beside its target and swapped in by
renames, so a crash at any moment leaves either the previous checkpoint or the new one:

    write .NAME.tmp-XXXX/   ->   rename NAME -> .NAME.old-XXXX   ->   rename tmp -> NAME
                            ->   delete .NAME.old-XXXX

If a crash falls between the two renames, NAME is missing and ``.NAME.old-*`` holds the last
good checkpoint; ``find_checkpoint`` puts it back.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqenc import atomic

from .config import TrainConfig
from .data import plan_change

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainerState:
    """Where the loop stands: saved in every trainer_state.pt ("trainer"), restored on resume."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch (0-based)
    position: int = 0  # optimizer steps already taken within the current epoch
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement
    stopped_early: bool = False
    elapsed: float = 0.0  # training seconds, summed over resumed runs


def write_atomic_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary directory, then make it ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = target.with_name(f".{target.name}.tmp-{token}")
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{token}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target


def find_checkpoint(target: Path) -> Path | None:
    """``target`` if it exists; else a complete ``.NAME.old-*`` left by an interrupted swap
    (renamed back into place); else None. Half-written ``.tmp-*`` directories are removed."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return None
    for tmp in parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if target.exists():
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
        return target
    if olds:
        os.replace(olds[-1], target)
        return target
    return None


def save_state(directory: Path, state: dict[str, Any]) -> None:
    torch.save(state, directory / STATE_FILE)


def load_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {directory} is not a resumable checkpoint")
    # Only tensors, numbers, strings and containers: the safe loader is enough.
    return torch.load(path, map_location="cpu", weights_only=True)


def load_resumable(directory: Path, cfg: TrainConfig,
                   groups: np.ndarray | None) -> dict[str, Any]:
    """The trainer state saved in ``directory``, if it continues the run ``cfg`` (and the
    training set's ``groups``) describe: trained with the same settings, its epochs planned as
    plan_epoch plans them now. Otherwise ValueError: what differs and what to do."""
    saved = load_state(directory)
    differences = cfg.differences(TrainConfig(**saved["config"]))
    if differences:
        raise ValueError("the checkpoint was trained with other settings; resuming would not "
                         "continue the same run:\n  " + "\n  ".join(differences))
    # checkpoints written before plans had numbers were planned by version 1
    change = plan_change(saved.get("plan", 1), groups, cfg.grad_accum)
    if change:
        raise ValueError(
            f"{directory / STATE_FILE} was written by an older seqenc, which planned this "
            f"run's epochs otherwise ({change}); resumed here it would not continue the same "
            "run (its epoch position would point into other steps). Start the run again "
            "without --resume (into a new --output, or after removing this one), or finish "
            "it with the seqenc that wrote the checkpoint.")
    return saved


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def export_model(source: Path, output: Path) -> None:
    """Copy a checkpoint's model files (not its trainer state) to the top of ``output``; each
    file is copied to a temporary name and renamed (``seqenc.atomic``), so no file is ever
    half-written."""
    for path in sorted(source.rglob("*")):
        if path.is_dir() or path.name == STATE_FILE:
            continue
        target = output / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.copy_file(path, target)


def _fsync_tree(directory: Path) -> None:
    """Flush every file so the rename never exposes a directory whose data is not on disk."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
