"""``seqenc encode`` (encode_cli.py) with the fake model: every input and output format, row
order, options, bad input, exit codes, interrupts, threads and devices."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fake_model import FakeModel, fake_vectors, read_output, run, use_fake_model, write_input
from seqenc import cli, exits
from seqenc.quantize import quantization_ranges, quantize

TESTS = Path(__file__).resolve().parent
TEXTS = ["The cat sat on the mat.", "Ein Hund bellt.", "", "naïve café ☕", "last one"]


@pytest.fixture
def fake(monkeypatch) -> FakeModel:
    return use_fake_model(monkeypatch)


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


# -- bad input, skipping, truncation ---------------------------------------------------------

BAD_JSONL = (
    b'{"text": "a"}\n{"txt": "b"}\nnot json\n{"text": "d"}\n{"text": "\xff"}\n{"text": "f"}\n'
)


def test_bad_input_exits_3_and_writes_nothing(tmp_path, fake):
    source = tmp_path / "in.jsonl"
    source.write_bytes(BAD_JSONL)
    out = tmp_path / "o.npy"
    out.write_bytes(b"previous")
    result = run("encode", source, "-o", out)
    assert result.exit_code == exits.EXIT_INPUT
    assert result.stderr.strip() == f"Error: {source}:2: field 'text': missing"
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "o.npy"]


def test_on_error_skip_keeps_ids(tmp_path, fake):
    source = tmp_path / "in.jsonl"
    source.write_bytes(BAD_JSONL)
    out = tmp_path / "o.jsonl"
    result = run("encode", source, "-o", out, "--on-error", "skip", "--chunk-size", 2)
    assert result.exit_code == 0, result.output
    ids, vectors = read_output(out)
    assert ids == [1, 4, 6]
    np.testing.assert_array_equal(vectors, fake_vectors(["a", "d", "f"]))
    for line in (2, 3, 5):
        assert f"skipped {source}:{line}: " in result.stderr
    assert "3 skipped" in result.stderr


def test_truncation_is_reported(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, ["short", "one two three four five six seven eight", "x"])
    result = run("encode", source, "-o", tmp_path / "o.npy")
    assert result.exit_code == 0, result.output
    assert "1 truncated" in result.stderr
    assert "1 records were longer than 8 tokens and were truncated (ids 2)" in result.stderr


def test_no_truncate_rejects_long_records(tmp_path, fake):
    source = tmp_path / "in.csv"
    write_input(source, ["short", "one two three four five six seven eight", "x"])
    out = tmp_path / "o.parquet"
    result = run("encode", source, "-o", out, "--no-truncate")
    assert result.exit_code == exits.EXIT_INPUT
    assert f"{source}:3: field 'text': longer than the model's 8 tokens" in result.stderr
    assert not out.exists()
    result = run("encode", source, "-o", out, "--no-truncate", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    ids, vectors = read_output(out)
    assert ids == [1, 3]
    np.testing.assert_array_equal(vectors, fake_vectors(["short", "x"]))


# -- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["encode", "{d}/missing.txt", "-o", "{d}/o.npy"], ["cannot read input"]),
        (["encode", "{d}/in.docx", "-o", "{d}/o.npy"], ["unknown input extension"]),
        (["encode", "{d}/in.txt", "--id-field", "id", "-o", "{d}/o.npy"], ["--id-field"]),
    ],
)
def test_input_errors_exit_3(tmp_path, fake, args, words):
    (tmp_path / "in.docx").write_text("x")
    (tmp_path / "in.txt").write_text("x")
    result = run(*[a.format(d=tmp_path) for a in args])
    assert result.exit_code == exits.EXIT_INPUT, result.output
    assert all(w in result.stderr for w in words)
    assert fake.calls == []


@pytest.mark.parametrize(
    "args, words",
    [
        (["encode", "{d}/in.txt", "-o", "{d}/o.csv"], ["unknown output extension"]),
        (["encode", "-"], ["required when reading stdin"]),
        (["encode", "{d}/in.txt", "--batch-size", "0"], ["--batch-size"]),
        (["encode", "{d}/in.txt", "--precision", "int4"], ["--precision"]),
        (["encode", "{d}/in.txt", "--max-length", "9"], ["limit of 8"]),
        (["encode", "{d}/in.txt", "-o", "{d}/in.txt"], ["unknown output extension"]),
        (["similarity", "only one"], ["at least two"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_usage_errors_exit_2(tmp_path, fake, args, words):
    (tmp_path / "in.txt").write_text("x\n")
    result = run(*[a.format(d=tmp_path) for a in args])
    assert result.exit_code == exits.EXIT_USAGE, result.output
    assert all(w in result.stderr for w in words), result.stderr


def test_output_may_not_overwrite_input(tmp_path, fake):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "x"}\n')
    result = run("encode", source, "-o", tmp_path / "." / "in.jsonl")
    assert result.exit_code == exits.EXIT_USAGE
    assert "overwrite the input" in result.stderr
    assert source.read_text() == '{"text": "x"}\n'


def test_model_load_failure_exits_4(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("x\n")
    result = run("encode", source, "--model", tmp_path / "no-such-model")
    assert result.exit_code == exits.EXIT_MODEL
    assert result.stderr.startswith("Error: cannot load model")
    assert "no-such-model" in result.stderr
    assert not (tmp_path / "in.npy").exists()


def test_unwritable_output_exits_1(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("encode", source, "-o", blocker / "o.npy")  # a directory that is a file
    assert result.exit_code == exits.EXIT_ERROR
    assert f"{blocker / 'o.npy'}" in result.stderr
    assert fake.calls == []


def test_unexpected_error_exits_1_and_keeps_previous_output(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    out = tmp_path / "o.parquet"
    out.write_bytes(b"previous")
    fake.fail_on_call = 2
    result = run("encode", source, "-o", out, "--chunk-size", 2)
    assert result.exit_code == exits.EXIT_ERROR
    assert "RuntimeError: fake model failure" in result.stderr
    assert "Traceback" not in result.output
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "o.parquet"]


def test_keyboard_interrupt_exits_130_without_output(tmp_path, fake):
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    fake.interrupt_on_call = 2
    result = run("encode", source, "-o", tmp_path / "o.npy", "--chunk-size", 2)
    assert result.exit_code == exits.EXIT_INTERRUPTED
    assert "interrupted: no output written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_a_real_process(tmp_path, signum):
    """Ctrl-C (or SIGTERM) on the running command: exit 130, a message, no traceback, no file."""
    source = tmp_path / "in.txt"
    write_input(source, TEXTS)
    marker = tmp_path / "encoding"
    driver = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        # a child of a background job starts with SIGINT ignored; a terminal's Ctrl-C does not
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from fake_model import FakeModel\n"
        "import seqenc.cli as cli\n"
        "cli.load_model = lambda name, device='cpu': "
        f"FakeModel(block_on_call=2, marker={str(marker)!r})\n"
        "cli.main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", driver, "encode", str(source), "-o", str(tmp_path / "o.npy"),
         "--chunk-size", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == exits.EXIT_INTERRUPTED, stderr
    assert "interrupted: no output written" in stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoding", "in.txt"]


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


def test_encode_on_a_missing_gpu_is_a_usage_error(tmp_path, fake, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    source = tmp_path / "in.txt"
    write_input(source, TEXTS[:2])
    result = run("encode", source, "-o", tmp_path / "out.npy", "--device", "cuda")
    assert result.exit_code == exits.EXIT_USAGE
    assert "PyTorch sees no GPU" in result.output
    assert not (tmp_path / "out.npy").exists()
