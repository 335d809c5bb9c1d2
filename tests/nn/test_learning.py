"""End to end: the encoder plus a linear head learns a task that needs attention.

Task, per token: "has this token already appeared earlier in the sequence?" No single token
and no fixed position answers it; a token must find an earlier copy of itself, so passing
shows that attention, positions, residuals and gradients all work together.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqenc.nn import Encoder

VOCAB, T = 10, 12


def repeated_earlier(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, VOCAB, (n, T), generator=generator)  # (B, T)
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): same[b, i, j] = ids[i] == ids[j]
    earlier = torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)  # j < i
    return ids, (same & earlier).any(-1).long()  # labels (B, T)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_learns_is_token_repeated_earlier(make_cfg, norm):
    torch.manual_seed(0)
    cfg = make_cfg(vocab_size=VOCAB, max_positions=T, norm=norm, final_norm=norm == "pre")
    encoder, head = Encoder(cfg), nn.Linear(cfg.d_model, 2)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=3e-3)
    train = torch.Generator().manual_seed(0)
    for _ in range(300):
        ids, labels = repeated_earlier(64, train)
        logits = head(encoder(ids).last_hidden_state)  # (B, T, 2)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    encoder.eval()
    ids, labels = repeated_earlier(512, torch.Generator().manual_seed(1234))  # held out
    with torch.no_grad():
        accuracy = (head(encoder(ids).last_hidden_state).argmax(-1) == labels).float().mean()
    majority = max(labels.float().mean(), 1 - labels.float().mean())
    assert majority < 0.7  # so 95% cannot come from always answering the common class
    assert accuracy > 0.95, f"held-out accuracy {accuracy:.3f}"
