"""``seqenc encode`` (encode_cli.py) when something is wrong: bad input, skipped and
truncated records, each exit code with its message, Ctrl-C and SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fake_model import TEXTS, fake_vectors, read_output, run, write_input
from seqenc import exits

TESTS = Path(__file__).resolve().parent
BAD_JSONL = (
    b'{"text": "a"}\n{"txt": "b"}\nnot json\n{"text": "d"}\n{"text": "\xff"}\n{"text": "f"}\n'
)


# -- bad input, skipping, truncation ---------------------------------------------------------


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


def test_skipped_records_tokens_are_not_counted(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text(" ".join(["word"] * 20) + "\nshort text\n")  # 22 tokens (> 8), then 4
    result = run("encode", source, "-o", tmp_path / "o.npy", "--no-truncate",
                 "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "encoded 1 records (4 tokens, 0 truncated, 1 skipped)" in result.stderr


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


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_unwritable_output_names_the_users_path(tmp_path, fake):
    source = tmp_path / "t.txt"
    source.write_text("a\n")
    target = "/proc/seqenc-test-output.npy"
    result = run("encode", source, "-o", target)
    assert result.exit_code == exits.EXIT_ERROR
    assert target in result.stderr
    assert ".tmp" not in result.stderr


def test_encode_on_a_missing_gpu_is_a_usage_error(tmp_path, fake, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    source = tmp_path / "in.txt"
    write_input(source, TEXTS[:2])
    result = run("encode", source, "-o", tmp_path / "out.npy", "--device", "cuda")
    assert result.exit_code == exits.EXIT_USAGE
    assert "PyTorch sees no GPU" in result.output
    assert not (tmp_path / "out.npy").exists()


# -- interrupts ------------------------------------------------------------------------------


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
