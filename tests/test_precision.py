"""bf16 on CPUs without native bf16 matmuls: bf16's weights, fp32's arithmetic."""

from __future__ import annotations

import pytest
import torch

from seqenc import precision
from seqenc.nn import Encoder
from seqenc.precision import cast_encoder, round_to_bf16


def test_round_to_bf16_gives_representable_values_in_fp32_storage():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    original = linear.weight.detach().clone()
    round_to_bf16(linear)
    assert linear.weight.dtype == torch.float32
    assert torch.equal(linear.weight, original.to(torch.bfloat16).float())
    assert not torch.equal(linear.weight, original)  # some values did change


@pytest.mark.parametrize("native", [False, True])
def test_cast_encoder_keeps_the_original(tiny_cfg, monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16_matmul", lambda device_type="cpu": native)
    encoder = Encoder(tiny_cfg).init_weights().eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cast = cast_encoder(encoder, torch.bfloat16)
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 6))
    with torch.no_grad():
        fp32 = encoder(ids).last_hidden_state
        bf16 = cast(ids).last_hidden_state
    # native: real bf16 compute; otherwise fp32 compute on bf16-rounded weights
    assert bf16.dtype == (torch.bfloat16 if native else torch.float32)
    if not native:
        expected = Encoder(tiny_cfg).eval()
        expected.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            assert torch.equal(bf16, round_to_bf16(expected)(ids).last_hidden_state)
    cos = torch.nn.functional.cosine_similarity(fp32, bf16.float(), dim=-1)
    assert cos.min().item() > 0.99
