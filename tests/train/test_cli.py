"""`seqenc train classify|mlm`, `seqenc predict`, `seqenc evaluate` through click."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from seqenc.train.cli import register


@pytest.fixture(scope="module")
def cli() -> click.Group:
    group = click.Group("seqenc")
    register(group)
    return group


def tiny_args(data_dir, tokenizer_file, output, *extra):
    return ["train", "classify", "--train", str(data_dir / "train.tsv"),
            "--dev", str(data_dir / "dev.tsv"), "--config", str(data_dir / "sizes.json"),
            "--tokenizer", str(tokenizer_file), "--max-length", "32", "--output", str(output),
            "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", *extra]


@pytest.fixture(scope="module")
def trained(cli, data_dir, tokenizer_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "clf"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(cli, tiny_args(data_dir, tokenizer_file, out))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out, result


def test_classify_writes_a_model_and_reports(trained):
    out, result = trained
    assert result.stdout.strip().endswith(str(out))
    assert "best dev (step" in result.stderr and "accuracy" in result.stderr
    assert (out / "classifier.safetensors").exists() and (out / "labels.json").exists()


def test_predict_jsonl_and_csv(cli, trained, data_dir, tmp_path):
    out, _ = trained
    result = CliRunner().invoke(cli, ["predict", str(out), str(data_dir / "dev.tsv")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 48 and rows[0]["line"] == 2
    assert set(rows[0]["probabilities"]) == {"0", "1"}
    assert rows[0]["label"] == max(rows[0]["probabilities"], key=rows[0]["probabilities"].get)
    target = tmp_path / "pred.csv"
    result = CliRunner().invoke(cli, ["predict", str(out), str(data_dir / "dev.tsv"),
                                      "-o", str(target)])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(open(target)))
    assert [r["label"] for r in table] == [r["label"] for r in rows]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]  # no temporary left
    texts = tmp_path / "texts.txt"
    texts.write_text("the movie was good\nawful\n")
    result = CliRunner().invoke(cli, ["predict", str(out), str(texts)])
    assert [json.loads(x)["line"] for x in result.stdout.splitlines()] == [1, 2]


def test_evaluate_prints_accuracy_f1_and_per_class(cli, trained, data_dir):
    out, _ = trained
    result = CliRunner().invoke(cli, ["evaluate", str(out), str(data_dir / "dev.tsv")])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "macro-F1" in result.stdout
    as_json = CliRunner().invoke(cli, ["evaluate", str(out), str(data_dir / "dev.tsv"), "--json"])
    report = json.loads(as_json.stdout)
    assert [c["label"] for c in report["per_class"]] == ["0", "1"]
    assert sum(c["support"] for c in report["per_class"]) == report["n"] == 48
    best = [json.loads(x) for x in open(out / "metrics.jsonl") if '"eval"' in x]
    assert report["accuracy"] == pytest.approx(max(r["accuracy"] for r in best))


# case: (the option given the bad file, its name, its content, what stderr must say of it)
BAD_DATA = {
    "empty": ("--train", "bad.tsv", "", ["{bad}", "empty file"]),
    "column": ("--train", "bad.tsv", "text\tlabel\nhello\t1\n",
               ["{bad}:1", "'sentence'", "no such column"]),
    "one_label": ("--train", "bad.tsv", "sentence\tlabel\na\t1\nb\t1\n",
                  ["{bad}", "only one label"]),
    "dev_label": ("--dev", "bad.tsv", "sentence\tlabel\na\t1\nb\tmaybe\n",
                  ["{bad}:3", "label 'maybe' is not one of"]),
    "config": ("--config", "sizes.json", json.dumps({"d_model": "wide", "n_heads": 4}),
               ["{bad}", "'d_model' must be a number"]),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_exits_3_naming_the_problem(cli, data_dir, tokenizer_file, tmp_path, case):
    option, name, content, said = BAD_DATA[case]
    args = tiny_args(data_dir, tokenizer_file, tmp_path / "out")
    bad = tmp_path / name
    bad.write_text(content)
    args[args.index(option) + 1] = str(bad)
    expected = [text.format(bad=bad) for text in said]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.output
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_usage_and_model_errors(cli, data_dir, tokenizer_file, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    result = CliRunner().invoke(cli, tiny_args(data_dir, tokenizer_file, used))
    assert result.exit_code == 2 and "--resume" in result.stderr
    result = CliRunner().invoke(cli, tiny_args(data_dir, tokenizer_file, tmp_path / "n",
                                               "--resume"))
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    result = CliRunner().invoke(cli, tiny_args(data_dir, tokenizer_file, tmp_path / "n",
                                               "--lr", "-1"))
    assert result.exit_code == 2 and "lr must be" in result.stderr
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), str(data_dir / "dev.tsv")])
    assert result.exit_code == 4 and "not a classifier directory" in result.stderr


def test_mlm_command(cli, data_dir, tmp_path):
    out = tmp_path / "mlm"
    result = CliRunner().invoke(cli, [
        "train", "mlm", "--corpus", str(data_dir / "corpus.txt"), "--config",
        str(data_dir / "sizes.json"), "--vocab-size", "120", "--max-length", "32",
        "--output", str(out), "--epochs", "1", "--batch-size", "32", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    assert "masked_accuracy" in result.stderr and "perplexity" in result.stderr
    assert (out / "mlm_head.safetensors").exists() and (out / "model.safetensors").exists()
    assert json.loads((out / "training_args.json").read_text())["task"] == "mlm"


def test_importing_the_commands_does_not_import_torch():
    code = ("import sys, seqenc.train.cli; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'eager import'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sigterm_saves_a_resumable_checkpoint(data_dir, tokenizer_file, tmp_path):
    """SIGTERM once the first checkpoint is on disk (checkpoints are renamed into place whole,
    so its existence is the condition): the run saves another and exits 130. The wait is for
    that condition, not a fixed time, so a loaded machine makes it slower, not flaky."""
    import signal
    import time

    out = tmp_path / "run"
    args = tiny_args(data_dir, tokenizer_file, out)
    args[args.index("--epochs") + 1] = "200"  # far more than the test waits for
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    log = tmp_path / "stderr.txt"  # a file, not a pipe nobody reads until the end: never full
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "seqenc.train", *args[1:],
                                 "--save-every", "2", "--eval-every", "1000"], env=env,
                                stderr=stderr, text=True)
    try:
        state = out / "checkpoints" / "last" / "trainer_state.pt"
        deadline = time.monotonic() + 900  # ~5 s on an idle machine
        while not state.exists():
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no checkpoint in 900 s:\n{log.read_text()}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = log.read_text()
    assert proc.returncode == 130, stderr
    assert "interrupted: saving a checkpoint" in stderr
    from seqenc.train import checkpointing

    saved = checkpointing.load_state(out / "checkpoints" / "last")["trainer"]["step"]
    assert saved >= 2
    assert not (out / "model.safetensors").exists()  # an unfinished run exports nothing
