"""seqenc.choices: one definition of each set of choices, and every surface offers exactly it."""

from __future__ import annotations

import subprocess
import sys

import click
import numpy as np
import pytest
import torch

from seqenc import choices, cli
from seqenc.bench_cli import bench_command
from seqenc.server.cli import serve_command
from seqenc.train.cli import train_group


def option_choices(command: click.Command, name: str) -> tuple[str, ...]:
    (param,) = [p for p in command.params if p.name == name]
    assert isinstance(param.type, click.Choice), name
    return tuple(param.type.choices)


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [
        (cli.encode, "pooling", choices.POOLINGS),
        (cli.encode, "dtype", choices.ENCODE_DTYPES),
        (cli.encode, "precision", choices.PRECISIONS),
        (cli.encode, "device", choices.DEVICES),
        (cli.encode, "fmt", choices.INPUT_FORMATS),
        (cli.encode, "on_error", choices.ON_ERROR),
        (bench_command, "dtypes", choices.ENCODE_DTYPES),
        (bench_command, "device", choices.DEVICES),
        (serve_command, "dtype", choices.DTYPES),
        (serve_command, "device", choices.DEVICES),
        (serve_command, "log_level", choices.LOG_LEVELS),
        (train_group.commands["classify"], "dtype", choices.DTYPES),
        (train_group.commands["classify"], "device", choices.DEVICES),
        (train_group.commands["classify"], "metric", choices.METRICS),
        (train_group.commands["mlm"], "dtype", choices.DTYPES),
        (train_group.commands["mlm"], "device", choices.DEVICES),
    ],
)
def test_cli_offers_exactly_the_choices(command, option, expected):
    assert option_choices(command, option) == expected


def test_cli_pooling_includes_mean_sqrt_len():  # the list had drifted from the API's
    assert "mean_sqrt_len" in option_choices(cli.encode, "pooling")


def test_api_accepts_every_choice_and_refuses_others():
    from seqenc.io import FORMATS, ON_ERROR, OUTPUT_FORMATS
    from seqenc.model import resolve_device
    from seqenc.pooling import POOLING_MODES, pool
    from seqenc.quantize import PRECISIONS, quantize
    from seqenc.server.settings import Settings
    from seqenc.train.config import ConfigError, TrainConfig

    assert POOLING_MODES == choices.POOLINGS and PRECISIONS == choices.PRECISIONS
    assert (FORMATS, ON_ERROR, OUTPUT_FORMATS) == (
        choices.INPUT_FORMATS, choices.ON_ERROR, choices.OUTPUT_FORMATS)
    hidden, keep = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    for mode in choices.POOLINGS:
        assert pool(hidden, keep, mode).shape == (2, 8)
    vectors = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    for precision in choices.PRECISIONS:
        quantize(vectors, precision)
    for dtype in choices.DTYPES:
        Settings(dtype=dtype)
        TrainConfig(dtype=dtype)
    for device in choices.DEVICES:
        TrainConfig(device=device)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="pooling must be one of"):
        choices.check_choice("pooling", "sum", choices.POOLINGS)


def test_sentence_encoder_accepts_every_choice():
    from seqenc.model import SentenceEncoder

    model = SentenceEncoder.__new__(SentenceEncoder)
    for pooling in choices.POOLINGS:
        for precision in choices.PRECISIONS:
            for dtype in choices.DTYPES:
                model._check_encode_args(2, pooling, precision, "sentence", dtype)
    with pytest.raises(ValueError, match="pooling must be one of mean, cls, max, mean_sqrt_len"):
        model._check_encode_args(2, "sum", "float32", "sentence", "float32")


def test_choices_module_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import seqenc.choices\n"
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('seqenc') "
        "and m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
