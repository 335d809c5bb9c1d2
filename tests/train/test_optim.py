"""The optimiser's parameter groups: no decay on 1-d parameters, and --head-lr for the head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seqenc.train.config import ConfigError, TrainConfig
from seqenc.train.optim import build_optimizer, warmup_linear


class _WithHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 1)


def _groups(optimizer) -> list[tuple[float, float, set[int]]]:
    return [(g["lr"], g["weight_decay"], {id(p) for p in g["params"]})
            for g in optimizer.param_groups]


def test_without_head_lr_every_parameter_shares_lr_and_1d_ones_skip_decay():
    model = _WithHead()
    groups = _groups(build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.1)))
    assert [(lr, wd) for lr, wd, _ in groups] == [(1e-3, 0.1), (1e-3, 0.0)]
    matrices = {id(model.encoder[0].weight), id(model.head.weight)}
    assert groups[0][2] == matrices
    assert groups[1][2] == {id(p) for p in model.parameters()} - matrices


def test_head_lr_applies_to_the_head_only_and_follows_the_same_schedule():
    model = _WithHead()
    optimizer = build_optimizer(model, TrainConfig(lr=1e-4, head_lr=1e-2, weight_decay=0.1))
    groups = _groups(optimizer)
    assert [(lr, wd) for lr, wd, _ in groups] == [(1e-4, 0.1), (1e-4, 0.0), (1e-2, 0.1),
                                                  (1e-2, 0.0)]
    assert groups[2][2] == {id(model.head.weight)} and groups[3][2] == {id(model.head.bias)}
    assert groups[0][2] | groups[1][2] == {id(p) for p in model.encoder.parameters()}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(2, 10))
    optimizer.step()
    scheduler.step()  # half way through the warm-up: every group at half its peak
    assert scheduler.get_last_lr() == pytest.approx([5e-5, 5e-5, 5e-3, 5e-3])


@pytest.mark.parametrize("bad", [0.0, -1e-5, math.inf, True])
def test_bad_head_lr_is_refused(bad):
    with pytest.raises(ConfigError, match="head_lr"):
        TrainConfig(head_lr=bad)
