"""Attention heatmaps: a real PNG comes out, bad inputs fail with a clear ValueError."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from seqenc.nn import Encoder
from seqenc.viz import encoder_attentions, plot_attention

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]


@pytest.fixture
def attentions(tiny_cfg) -> list[np.ndarray]:
    torch.manual_seed(0)
    return encoder_attentions(Encoder(tiny_cfg), torch.tensor([[1, 7, 9, 4, 2]]))


def read_png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_MAGIC
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_encoder_attentions_first_sequence(tiny_cfg):
    encoder = Encoder(tiny_cfg).train()
    ids = torch.tensor([[1, 7, 9, 0], [3, 3, 3, 3]])
    keep = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    maps = encoder_attentions(encoder, ids, keep)
    assert encoder.training  # restored after the eval-mode pass
    assert len(maps) == 2 and all(m.shape == (4, 4, 4) for m in maps)  # N x (H, T, T)
    assert all(isinstance(m, np.ndarray) for m in maps)
    with torch.no_grad():
        want = encoder.eval()(ids, keep, output_attentions=True).attentions
    for got, w in zip(maps, want, strict=True):
        assert np.allclose(got, w[0].numpy())
    assert np.all(maps[0][:, :, 3] == 0)  # the padding key gets no attention
    # a single unbatched sequence works too
    assert encoder_attentions(encoder, [1, 7, 9])[0].shape == (4, 3, 3)


def test_writes_a_png_grid(attentions, tmp_path):
    out = plot_attention(TOKENS, attentions, tmp_path / "maps" / "attention.png", title="tiny")
    assert out == tmp_path / "maps" / "attention.png"
    assert out.stat().st_size > 10_000  # 8 heatmaps with labels, not an empty canvas
    width, height = read_png_size(out)
    # four heads side by side, two layers stacked: wider than tall
    assert width > height > 200
    one = plot_attention(TOKENS, attentions, tmp_path / "one.png", layers=[1], heads=[2])
    one_w, one_h = read_png_size(one)
    assert one_w < width and one_h < height


def test_accepts_batched_tensors_and_long_sequences(tiny_cfg, tmp_path):
    encoder = Encoder(tiny_cfg).eval()
    with torch.no_grad():
        out = encoder(torch.randint(0, 50, (1, 32)), output_attentions=True)
    tokens = [f"t{i}" for i in range(32)]
    path = plot_attention(tokens, out.attentions, tmp_path / "long.png", heads=[0])  # (1, H, T, T)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_does_not_touch_pyplot(attentions, tmp_path):
    # drawing must not switch the caller's backend or leave figures open
    plot_attention(TOKENS, attentions, tmp_path / "a.png")
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": TOKENS[:4]}, r"got 4 tokens but the attention maps cover 5 positions"),
        ({"layers": [2]}, r"layer index 2 out of range: there are 2 layers"),
        ({"layers": [-1]}, r"layer index -1 out of range"),
        ({"heads": [4]}, r"head index 4 out of range: there are 4 heads"),
        ({"heads": []}, r"no heads selected"),
    ],
)
def test_bad_arguments_raise(attentions, tmp_path, kwargs, message):
    args = {"tokens": TOKENS, "attentions": attentions, "path": tmp_path / "x.png"} | kwargs
    with pytest.raises(ValueError, match=message):
        plot_attention(**args)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        ([], r"attentions is empty"),
        ([np.ones((4, 5, 5)), np.ones((4, 6, 6))], r"attentions\[1\] has shape \(4, 6, 6\)"),
        ([np.ones((4, 5, 4))], r"expected \(H, T, T\) or \(1, H, T, T\)"),
        ([np.ones((5, 5))], r"expected \(H, T, T\)"),
        ([np.ones((2, 4, 5, 5))], r"expected \(H, T, T\) or \(1, H, T, T\)"),
    ],
)
def test_ragged_or_misshapen_attentions_raise(tmp_path, maps, message):
    with pytest.raises(ValueError, match=message):
        plot_attention(TOKENS, maps, tmp_path / "x.png")
