"""sizes.json and TrainConfig validation: every bad value is named with its file and field."""

from __future__ import annotations

import json

import pytest

from seqenc.train.config import ConfigError, TrainConfig, load_encoder_config


def write(tmp_path, data, name="sizes.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_reads_fields_and_fills_defaults(tmp_path):
    cfg = load_encoder_config(write(tmp_path, {"d_model": 64, "n_heads": 4, "n_layers": 1.0}),
                              vocab_size=123)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.vocab_size) == (64, 4, 1, 123)
    assert isinstance(cfg.n_layers, int)


@pytest.mark.parametrize("data, message", [
    ({"d_model": "big"}, "field 'd_model' must be a number, got \"big\""),
    ({"dropout": "0.1"}, "field 'dropout' must be a number"),
    ({"n_layers": 2.5}, "field 'n_layers' must be an integer, got 2.5"),
    ({"n_layers": True}, "field 'n_layers' must be a number, got true"),
    ({"final_norm": 1}, "field 'final_norm' must be true or false"),
    ({"hidden": 64, "layers": 2}, "unknown field\\(s\\) 'hidden', 'layers'"),
    ({"d_model": 30, "n_heads": 4}, "must be divisible"),
    ({"activation": "swish"}, "activation must be one of"),
    ([1, 2], "expected a JSON object"),
    ('{"d_model": 32,\n "n_heads": }', "sizes.json:2:13: not valid JSON"),
])
def test_bad_sizes_file_is_named(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as err:
        load_encoder_config(path, vocab_size=100)
    assert str(path) in str(err.value)


def test_missing_sizes_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_encoder_config(tmp_path / "nope.json")


@pytest.mark.parametrize("field, value", [
    ("lr", 0), ("lr", -1.0), ("batch_size", 0), ("grad_accum", 1.5), ("warmup_ratio", 1.0),
    ("dtype", "float16"), ("max_steps", 0), ("patience", True), ("max_grad_norm", float("nan")),
])
def test_train_config_rejects(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_resume_differences_ignore_harmless_fields():
    a = TrainConfig(lr=1e-4, patience=2, eval_every=10)
    assert a.differences(TrainConfig(lr=1e-4, patience=5, eval_every=20)) == []
    assert a.differences(TrainConfig(lr=2e-4)) == ["lr: checkpoint 0.0002, now 0.0001"]
