"""Atomic checkpoint directories and the resumable trainer state.

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
from pathlib import Path
from typing import Any

import torch

from seqenc import atomic

STATE_FILE = "trainer_state.pt"


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
