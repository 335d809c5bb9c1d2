"""``seqenc encode`` (encode_cli.py) with the fake model: every input and output format, row
order, options, threads and devices, blank texts, output names (its errors and exit codes:
test_encode_cli_errors)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from fake_model import TEXTS, FakeModel, fake_vectors, read_output, run, write_input
from seqenc import cli, exits
from seqenc.quantize import quantization_ranges, quantize

# -- encode, with the fake model -------------------------------------------------------------


@pytest.mark.parametrize("out_fmt", ["npy", "parquet", "jsonl"])
@pytest.mark.parametrize("in_fmt", ["txt", "jsonl", "csv", "tsv", "parquet"])
def test_encode_each_format_keeps_row_order(tmp_path, fake, in_fmt, out_fmt):
    # the empty text would make a blank CSV line, which is no row: keep it out of csv/tsv
    texts = [t for t in TEXTS if t or in_fmt not in ("csv", "tsv")]
    source = tmp_path / f"in.{in_fmt}"
    ids = write_input(source, texts)
    out = tmp_path / f"out.{out_fmt}"
    result = run("encode", source, "-o", out, "--chunk-size", 2)
    assert result.exit_code == 0, result.output
    got_ids, vectors = read_output(out)
    np.testing.assert_array_equal(vectors, fake_vectors(texts))
    if got_ids is not None:
        assert got_ids == ids
    assert [c["n"] for c in fake.calls] == [2, 2, 1][: len(fake.calls)]


def test_summary_and_default_output(tmp_path, fake):
    source = tmp_path / "corpus.txt"
    write_input(source, TEXTS)
    result = run("encode", source)
    assert result.exit_code == 0, result.output
    out = tmp_path / "corpus.npy"
    assert np.load(out).shape == (5, 16)
    assert result.stdout == ""  # stdout stays free for pipes
    tokens = sum(len(t.split()) + 2 for t in TEXTS)
    assert f"encoded 5 records ({tokens} tokens, 0 truncated, 0 skipped)" in result.stderr
    assert "records/s" in result.stderr and "tokens/s" in result.stderr
    assert f"wrote 5 vectors (dim 16, float32) to {out}" in result.stderr


def test_quiet_and_creates_output_directory(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    out = tmp_path / "new" / "dir" / "v.npy"
    result = run("encode", source, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert np.load(out).shape == (5, 16)


def test_stdin(tmp_path, fake):
    out = tmp_path / "v.parquet"
    result = run("encode", "-", "-o", out, input=b"a\nb b\n")
    assert result.exit_code == 0, result.output
    ids, vectors = read_output(out)
    assert ids == [1, 2]
    np.testing.assert_array_equal(vectors, fake_vectors(["a", "b b"]))
    result = run("encode", "-", "--format", "jsonl", "-o", out, input=b'{"text": "z"}\n')
    assert result.exit_code == 0, result.output
    assert read_output(out)[0] == [1]


def test_options_reach_the_model(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    result = run("encode", source, "-o", tmp_path / "o.npy", "--batch-size", 7, "--pooling",
                 "cls", "--no-normalize", "--dtype", "bfloat16", "--max-length", 5)
    assert result.exit_code == 0, result.output
    call = fake.calls[0]
    assert (call["batch_size"], call["pooling"], call["normalize"], call["dtype"]) == (
        7, "cls", False, "bfloat16")
    assert fake.max_seq_length == 5


def test_empty_input_gives_empty_output(tmp_path, fake):
    source = tmp_path / "in.txt"
    source.write_text("")
    out = tmp_path / "o.npy"
    result = run("encode", source, "-o", out, "--precision", "ubinary")
    assert result.exit_code == 0, result.output
    array = np.load(out)
    assert (array.shape, array.dtype) == ((0, 2), np.uint8)
    assert "held no records" in result.stderr


def test_int8_ranges_are_calibrated_once(tmp_path, fake):
    texts = [f"text number {i}" for i in range(7)]
    source = tmp_path / "in.txt"
    write_input(source, texts)
    out = tmp_path / "o.npy"
    result = run("encode", source, "-o", out, "--precision", "int8", "--chunk-size", 3)
    assert result.exit_code == 0, result.output
    floats = fake_vectors(texts)
    expected = quantize(floats, "int8", quantization_ranges(floats[:3]))
    np.testing.assert_array_equal(np.load(out), expected)
    assert [c["precision"] for c in fake.calls] == ["float32", "int8", "int8"]


def test_binary_precision_packs_bits(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    out = tmp_path / "o.npy"
    assert run("encode", source, "-o", out, "--precision", "binary").exit_code == 0
    np.testing.assert_array_equal(np.load(out), quantize(fake_vectors(TEXTS), "binary"))


# -- threads and devices ---------------------------------------------------------------------


def test_encode_threads_sets_torch_threads(tmp_path, fake):
    import torch

    source = tmp_path / "in.txt"
    write_input(source, TEXTS[:2])
    before = torch.get_num_threads()
    try:
        result = run("encode", source, "-o", tmp_path / "out.npy", "--threads", 2)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert run("encode", source, "--threads", 0).exit_code == exits.EXIT_USAGE


def test_encode_device_reaches_the_model_loader(tmp_path, monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(cli, "load_model",
                        lambda name, device="cpu": asked.append(device) or FakeModel())
    source = tmp_path / "in.txt"
    write_input(source, TEXTS[:2])
    assert run("encode", source, "-o", tmp_path / "a.npy", "--device", "auto").exit_code == 0
    assert run("encode", source, "-o", tmp_path / "b.npy").exit_code == 0
    assert asked == ["cuda" if torch.cuda.is_available() else "cpu", "cpu"]


# -- blank texts, derived output names, replaced outputs --------------------------------------


def test_blank_lines_are_counted_and_warned_about(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("first\n\n   \t\nlast\n")
    result = run("encode", source, "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 0, result.output
    assert ("warning: 2 blank or whitespace-only lines (ids 2, 3) were encoded as empty texts; "
            "--skip-blank leaves them out") in result.stderr
    assert "encoded 4 records (" in result.stderr and "2 blank among them" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4]


def test_skip_blank_leaves_them_out_and_ids_keep_line_numbers(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("first\n\n   \nlast\n")
    result = run("encode", source, "-o", tmp_path / "o.jsonl", "--skip-blank", "--chunk-size", 2)
    assert result.exit_code == 0, result.output
    assert "warning: 2 blank or whitespace-only lines (ids 2, 3) were left out" in result.stderr
    assert "encoded 2 records (" in result.stderr and "2 blank left out" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 4]
    np.testing.assert_allclose([r["embedding"] for r in rows], fake_vectors(["first", "last"]),
                               rtol=1e-6)
    assert sum(call["n"] for call in fake.calls) == 2  # the blank lines never reached the model


def test_no_blank_warning_without_blanks(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    result = run("encode", source, "-o", tmp_path / "o.npy")
    assert "whitespace" not in result.stderr and "blank among" not in result.stderr


def test_derived_output_never_replaces_an_existing_file(tmp_path, fake):
    (tmp_path / "t.txt").write_text("from txt\n")
    (tmp_path / "t.jsonl").write_text('{"text": "from jsonl"}\n')
    assert run("encode", tmp_path / "t.txt").exit_code == 0
    first = (tmp_path / "t.npy").read_bytes()
    result = run("encode", tmp_path / "t.jsonl")
    assert result.exit_code == exits.EXIT_USAGE
    assert f"{tmp_path / 't.npy'} already exists" in result.stderr
    assert "--force" in result.stderr and "-o" in result.stderr
    assert (tmp_path / "t.npy").read_bytes() == first
    assert fake.calls[1:] == []  # refused before loading or encoding anything
    assert run("encode", tmp_path / "t.jsonl", "--force").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), fake_vectors(["from jsonl"]))
    assert run("encode", tmp_path / "t.txt", "-o", tmp_path / "t.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), fake_vectors(["from txt"]))


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_replaced_output_keeps_its_mode(tmp_path, fake, suffix):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    out = tmp_path / f"o{suffix}"
    out.write_bytes(b"old")
    out.chmod(0o444)
    result = run("encode", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o444
    assert out.read_bytes() != b"old"
