"""The seqenc command line: its help and exit codes, similarity and info with the fake model,
and the commands with the real model (``seqenc encode`` with the fake one: test_encode_cli)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_model import fake_vectors, run, write_input
from seqenc import cli, exits


def test_exit_codes_are_documented():
    for args in ([], ["encode"]):
        result = run(*args, "--help")
        for code in (0, 1, 2, 3, 4, 130):
            assert re.search(rf"^ +{code} +[a-z]", result.output, re.MULTILINE), code


@pytest.mark.parametrize("args", [["--help"], ["encode", "--help"], ["info", "--help"]])
def test_help_does_not_import_torch(args):
    code = (
        "import sys, seqenc.cli\n"
        f"try:\n    seqenc.cli.main({args!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- similarity and info, with the fake model ------------------------------------------------


def test_similarity_table_and_json(fake):
    texts = ["alpha", "beta", "alpha"]
    vectors = fake_vectors(texts).astype(np.float64)
    expected = vectors @ vectors.T
    result = run("similarity", *texts, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["texts"] == texts
    np.testing.assert_allclose(data["similarity"], expected, atol=1e-6)
    result = run("similarity", *texts)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["[1]", "[2]", "[3]"]
    assert lines[1].split() == ["[1]", "1.0000", f"{expected[0, 1]:.4f}", "1.0000"]
    assert lines[-1] == "[3] alpha"


def test_info(fake):
    result = run("info", "--json")
    assert json.loads(result.stdout)["parameters"] == 1234
    result = run("info")
    assert "parameters" in result.stdout and "1,234" in result.stdout
    assert "max seq length  8" in result.stdout


# -- model load errors, with the real loader ------------------------------------------------


def test_config_json_that_is_not_an_object_names_the_file(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("[]")
    result = run("info", model_dir)
    assert result.exit_code == exits.EXIT_MODEL
    assert f"{model_dir / 'config.json'}: expected a JSON object" in result.stderr
    assert "got a JSON array" in result.stderr
    assert "attribute" not in result.stderr


def test_seqenc_model_is_named_when_it_points_nowhere(monkeypatch):
    monkeypatch.setenv("SEQENC_MODEL", "/nonexistent")
    result = run("info")
    assert result.exit_code == exits.EXIT_MODEL
    assert "'/nonexistent' (set by SEQENC_MODEL)" in result.stderr


# -- with the real default model -------------------------------------------------------------


@pytest.fixture(scope="module")
def real_model():
    try:
        return cli.load_model(None)
    except cli.ModelLoadError as e:  # pragma: no cover - depends on the install
        pytest.skip(f"default model not available: {e}")


@pytest.fixture
def real(monkeypatch, real_model):
    monkeypatch.setattr(cli, "load_model", lambda name, device="cpu": real_model)
    return real_model


SENTENCES = ["The cat sat on the mat.", "A kitten rested on the rug.",
             "Interest rates rose again.", "", "Très bien, merci !"]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_real_encode_equals_library_encode(tmp_path, real, precision):
    source = tmp_path / "in.txt"
    write_input(source, SENTENCES)
    out = tmp_path / "o.npy"
    result = run("encode", source, "-o", out, "--precision", precision)
    assert result.exit_code == 0, result.output
    expected = real.encode(SENTENCES, precision=precision)
    got = np.load(out)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_real_max_length_truncates(tmp_path, real_model):
    source = tmp_path / "in.txt"
    write_input(source, SENTENCES)
    result = run("encode", source, "-o", tmp_path / "o.npy", "--max-length", 4)  # real loader
    assert result.exit_code == 0, result.output
    assert "4 truncated" in result.stderr  # all but the empty text
    vectors = np.load(tmp_path / "o.npy")
    # 4 tokens: [CLS] the cat [SEP]
    np.testing.assert_allclose(vectors[0], real_model.encode(["The cat"])[0], atol=1e-6)
    assert real_model.max_seq_length == 256  # the shared model was not the one cut down


def test_real_similarity(real):
    result = run("similarity", *SENTENCES[:3], "--json")
    assert result.exit_code == 0, result.output
    matrix = np.array(json.loads(result.stdout)["similarity"])
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
    assert matrix[0, 1] > matrix[0, 2]  # the two cat sentences are the closest pair


def test_real_info(real):
    data = json.loads(run("info", "--json").stdout)
    assert (data["dimension"], data["layers"], data["heads"]) == (384, 6, 12)
    assert data["parameters"] > 20_000_000


def test_real_attention(tmp_path, real):
    out = tmp_path / "maps" / "a.png"
    result = run("attention", "The cat sat.", "-o", out, "--layer", 0, "--layer", 5, "--head", 3)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(2 layers x 1 heads, 6 tokens)" in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.png"]
    result = run("attention", "x", "-o", out, "--layer", 6)
    assert result.exit_code == exits.EXIT_USAGE
    assert "--layer" in result.stderr and "0..5" in result.stderr
    assert run("attention", "x", "-o", tmp_path / "a.jpg").exit_code == exits.EXIT_USAGE


def test_console_script_runs(tmp_path):
    """The installed entry point, end to end, as `make demo` runs it."""
    exe = Path(sys.executable).with_name("seqenc")
    if not exe.exists():  # pragma: no cover - depends on the install
        pytest.skip("seqenc console script not installed")
    source = tmp_path / "in.txt"
    write_input(source, SENTENCES[:2])
    out = tmp_path / "out" / "v.npy"
    env = {**os.environ, "SEQENC_MODEL": ""}
    proc = subprocess.run([str(exe), "encode", str(source), "-o", str(out)], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 2 vectors (dim 384, float32) to {out}" in proc.stderr
    assert np.load(out).shape == (2, 384)
