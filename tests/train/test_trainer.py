"""The training loop: learning, exact resume, atomic checkpoints, accumulation, early stop."""

from __future__ import annotations

import json
import os

import pytest
import torch

from seqenc.train import checkpointing as ckpt
from seqenc.train.classifier import TextClassifier
from seqenc.train.recipes import train_classifier
from seqenc.train.tasks import ClassificationTask
from seqenc.train.trainer import warmup_linear

from .helpers import config, job, quiet, weights


def events(path, kind):
    return [json.loads(line) for line in open(path) if json.loads(line)["event"] == kind]


def test_loss_decreases_and_outputs_are_written(data_dir, tokenizer_file, tmp_path):
    out = tmp_path / "run"
    result = train_classifier(job(data_dir, tokenizer_file, out), config(epochs=6),
                              echo=quiet)
    train = events(out / "metrics.jsonl", "train")
    first, last = train[0]["loss"], sum(r["loss"] for r in train[-8:]) / 8
    assert last < 0.5 * first, (first, last)
    assert result.finished and result.steps == 48  # 128 examples / 16 = 8 steps x 6 epochs
    assert result.best_metrics["accuracy"] >= 0.9
    assert [r["step"] for r in events(out / "metrics.jsonl", "eval")] == [8, 16, 24, 32, 40, 48]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "modules.json",
                 "classifier.safetensors", "labels.json", "learning_curves.png",
                 "training_args.json", "checkpoints/last/trainer_state.pt",
                 "checkpoints/best/model.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "labels.json").read_text())["labels"] == ["0", "1"]
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


def test_resume_is_bit_exact(data_dir, tokenizer_file, tmp_path):
    """Interrupted at step 5 and resumed == uninterrupted, tensor for tensor. Dropout is on so
    that the saved RNG state matters; steps cross an epoch boundary and an evaluation."""
    cfg = config(epochs=2, eval_every=4, save_every=5, log_every=1)
    sizes = {"dropout": 0.1, "attention_dropout": 0.1}
    full = tmp_path / "full"
    train_classifier(job(data_dir, tokenizer_file, full, sizes), cfg, echo=quiet)

    part = tmp_path / "part"
    first = train_classifier(job(data_dir, tokenizer_file, part, sizes), cfg, echo=quiet,
                             stop_after=5)
    assert not first.finished and first.steps == 5
    assert not (part / "model.safetensors").exists()  # nothing exported before the end
    resumed = train_classifier(job(data_dir, tokenizer_file, part, sizes, resume=True), cfg,
                               echo=quiet)
    assert resumed.finished and resumed.steps == 16

    for name in ("checkpoints/last", "."):
        a, b = weights(full / name), weights(part / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    state_a = ckpt.load_state(full / "checkpoints" / "last")
    state_b = ckpt.load_state(part / "checkpoints" / "last")
    for key, value in state_a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], state_b["optimizer"]["state"][key]["exp_avg_sq"])
    assert torch.equal(state_a["rng"]["torch"], state_b["rng"]["torch"])

    def losses(path):
        return [(r["step"], r["loss"]) for r in events(path / "metrics.jsonl", "train")]

    assert losses(full) == losses(part)  # the log holds each step once, with the same loss


def test_interrupt_saves_a_checkpoint_that_resumes_exactly(data_dir, tokenizer_file, tmp_path,
                                                           monkeypatch):
    cfg = config(epochs=1, save_every=100)
    full = tmp_path / "full"
    train_classifier(job(data_dir, tokenizer_file, full, {"dropout": 0.1}), cfg, echo=quiet)

    calls = {"n": 0}
    original = ClassificationTask.loss_sum

    def interrupt_at_step_6(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(self, model, batch)

    part = tmp_path / "part"
    monkeypatch.setattr(ClassificationTask, "loss_sum", interrupt_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(job(data_dir, tokenizer_file, part, {"dropout": 0.1}), cfg, echo=quiet)
    assert ckpt.load_state(part / "checkpoints" / "last")["trainer"]["step"] == 5
    monkeypatch.setattr(ClassificationTask, "loss_sum", original)
    train_classifier(job(data_dir, tokenizer_file, part, {"dropout": 0.1}, resume=True), cfg,
                     echo=quiet)
    a, b = weights(full), weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crash_during_save_keeps_the_last_good_checkpoint(data_dir, tokenizer_file, tmp_path,
                                                          monkeypatch):
    out = tmp_path / "run"
    cfg = config(epochs=2, save_every=4)
    train_classifier(job(data_dir, tokenizer_file, out), cfg, echo=quiet, stop_after=4)
    last = out / "checkpoints" / "last"
    before = weights(last)

    def crash(self, directory):
        (directory / "model.safetensors").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ClassificationTask, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        train_classifier(job(data_dir, tokenizer_file, out, resume=True), cfg, echo=quiet)
    monkeypatch.undo()
    after = weights(last)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert ckpt.load_state(last)["trainer"]["step"] == 4
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]
    TextClassifier.from_pretrained(last)  # still a loadable model


def test_find_checkpoint_repairs_an_interrupted_swap(tmp_path):
    target = tmp_path / "last"
    ckpt.write_atomic_dir(target, lambda d: (d / "a.txt").write_text("one"))
    ckpt.write_atomic_dir(target, lambda d: (d / "a.txt").write_text("two"))
    assert (target / "a.txt").read_text() == "two"
    # A crash between the two renames: the old checkpoint moved aside, the new not yet in place.
    os.replace(target, tmp_path / ".last.old-dead")
    (tmp_path / ".last.tmp-dead").mkdir()
    assert ckpt.find_checkpoint(target) == target
    assert (target / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_gradient_accumulation_equals_the_large_batch(data_dir, tokenizer_file, tmp_path):
    # Without length grouping the 16-example batch is exactly the two 8-example halves.
    big = tmp_path / "big"
    train_classifier(job(data_dir, tokenizer_file, big),
                     config(epochs=1, batch_size=16, group_by_length=False), echo=quiet)
    small = tmp_path / "small"
    train_classifier(job(data_dir, tokenizer_file, small),
                     config(epochs=1, batch_size=8, grad_accum=2, group_by_length=False),
                     echo=quiet)
    a, b = weights(big), weights(small)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)


def test_early_stopping_exports_the_best_checkpoint(data_dir, tokenizer_file, tmp_path):
    out = tmp_path / "run"
    # lr so small that nothing changes: the first evaluation stays the best one.
    result = train_classifier(job(data_dir, tokenizer_file, out),
                              config(epochs=10, lr=1e-12, eval_every=2, patience=2), echo=quiet)
    assert result.stopped_early and result.finished
    assert result.steps == 6 and result.best_step == 2
    best, exported = weights(out / "checkpoints" / "best"), weights(out)
    assert all(torch.equal(best[k], exported[k]) for k in best)
    end = events(out / "metrics.jsonl", "end")[0]
    assert end["stopped_early"] and end["best_step"] == 2


def test_fresh_run_refuses_a_used_output(data_dir, tokenizer_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(FileExistsError, match="--resume"):
        train_classifier(job(data_dir, tokenizer_file, out), config(), echo=quiet)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_classifier(job(data_dir, tokenizer_file, tmp_path / "new", resume=True), config(),
                         echo=quiet)


def test_resume_with_other_settings_is_refused(data_dir, tokenizer_file, tmp_path):
    out = tmp_path / "run"
    train_classifier(job(data_dir, tokenizer_file, out), config(), echo=quiet, stop_after=2)
    with pytest.raises(ValueError, match="lr: checkpoint 0.003, now 0.001"):
        train_classifier(job(data_dir, tokenizer_file, out, resume=True), config(lr=1e-3),
                         echo=quiet)


def test_bfloat16_autocast_keeps_float32_weights(data_dir, tokenizer_file, tmp_path):
    out = tmp_path / "bf16"
    result = train_classifier(job(data_dir, tokenizer_file, out), config(epochs=1,
                              dtype="bfloat16"), echo=quiet)
    losses = [r["loss"] for r in events(out / "metrics.jsonl", "train")]
    assert len(losses) == 8 and all(0 < x < 5 for x in losses)
    assert all(v.dtype == torch.float32 for v in weights(out).values())
    assert result.best_metrics["accuracy"] > 0


def test_warmup_then_linear_decay():
    f = warmup_linear(warmup=4, total=12)
    assert [f(s) for s in (0, 2, 4, 8, 12, 13)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
