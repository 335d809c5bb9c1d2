"""`seqenc train pairs`: a cross-encoder fine-tuned on sentence pairs, loadable by transformers
and sentence-transformers; regression and classification; bad data named by line."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from heads_support import randomize
from seqenc.cli import main
from seqenc.crossencoder import CrossEncoder
from seqenc.io.errors import InputError
from seqenc.model import default_model_path
from seqenc.train.config import TrainConfig
from seqenc.train.pairs import PairsJob, train_pairs

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

WORDS = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep", "goat"]


def pair_rows(n: int, seed: int) -> list[tuple[str, str, float]]:
    """(a, b, score): the score is the share of b's words that also appear in a."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = rng.sample(WORDS, 4)
        shared = rng.randint(0, 3)
        b = a[:shared] + rng.sample([w for w in WORDS if w not in a], 3 - shared)
        rows.append((" ".join(a), " ".join(b), shared * 5 / 3))
    return rows


def write_sts(path: Path, rows) -> Path:
    """STS-B's layout: headerless TSV, score in column 4, sentences in 5 and 6."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (a, b, score) in enumerate(rows):
            f.write(f"genre\tfile\tyear\t{i:04d}\t{score:.3f}\t{a}\t{b}\n")
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BertModel (with pooler) and the default model's tokenizer."""
    import shutil

    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=64)
    model = transformers.BertModel(cfg).eval()
    randomize(model)
    model.save_pretrained(directory)
    shutil.copy(default_model_path() / "tokenizer.json", directory / "tokenizer.json")
    return directory


def sts_job(tmp_path: Path, init: Path, **kw) -> PairsJob:
    train = write_sts(tmp_path / "train.csv", pair_rows(96, 0))
    dev = write_sts(tmp_path / "dev.csv", pair_rows(32, 1))
    return PairsJob(train=str(train), output=str(tmp_path / "out"), dev=str(dev),
                    first_column="5", second_column="6", target_column="4", header=False,
                    fmt="tsv", max_score=5, init=str(init), max_length=32, **kw)


def test_regression_run_loads_in_transformers_and_sentence_transformers(tmp_path, tiny_bert):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, seed=0, log_every=2)
    result = train_pairs(sts_job(tmp_path, tiny_bert), cfg, echo=lambda m: None)
    out = Path(result.output)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert {"spearman", "pearson", "loss"} <= set(evals[-1])
    assert len(evals) == 3 and evals[-1]["loss"] < evals[0]["loss"]
    ours = CrossEncoder.from_pretrained(out)
    pairs = [(a, b) for a, b, _ in pair_rows(8, 2)]
    scores = ours.predict(pairs)
    peer = sentence_transformers.CrossEncoder(str(out), device="cpu")
    np.testing.assert_allclose(peer.predict(pairs), scores, atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = hf(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(logits, ours.predict(pairs, raw=True), atol=1e-5)
    # the dev Spearman the trainer logged is the one the exported model gives
    best = max(e["spearman"] for e in evals)
    dev = pair_rows(32, 1)
    from scipy.stats import spearmanr

    dev_scores = ours.predict([(a, b) for a, b, _ in dev])
    assert spearmanr(dev_scores, [s for *_, s in dev])[0] == pytest.approx(best, abs=1e-6)


def test_classification_on_labels(tmp_path, tiny_bert):
    rows = [(a, b, "same" if s > 2.5 else "different") for a, b, s in pair_rows(64, 3)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": y}) + "\n"
                            for a, b, y in rows))
    job = PairsJob(train=str(path), output=str(tmp_path / "out"), dev_fraction=0.25,
                   target="label", init=str(tiny_bert), max_length=32)
    result = train_pairs(job, TrainConfig(epochs=1, batch_size=16, lr=1e-3),
                         echo=lambda m: None)
    assert {"accuracy", "macro_f1"} <= set(result.last_metrics)
    model = CrossEncoder.from_pretrained(result.output)
    assert model.num_labels == 2 and model.activation == "identity"
    config = json.loads((Path(result.output) / "config.json").read_text())
    assert config["id2label"] == {"0": "different", "1": "same"}
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(result.output)
    assert hf.config.id2label == {0: "different", 1: "same"}


def test_bad_scores_are_named_by_line(tmp_path, tiny_bert):
    rows = pair_rows(10, 0)
    path = write_sts(tmp_path / "train.csv", rows)
    job = sts_job(tmp_path, tiny_bert)
    job.train, job.dev, job.max_score = str(path), None, 1.0
    with pytest.raises(InputError, match=r"train.csv:1.*outside \[0, 1\].*--max-score"):
        train_pairs(job, TrainConfig(), echo=lambda m: None)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("\t0.000\t", "\tn/a\t").replace("\t1.667\t", "\tn/a\t") \
        .replace("\t3.333\t", "\tn/a\t").replace("\t5.000\t", "\tn/a\t")
    path.write_text("\n".join(lines) + "\n")
    job.max_score = 5
    with pytest.raises(InputError, match=r"train.csv:4.*'n/a' is not a number"):
        train_pairs(job, TrainConfig(), echo=lambda m: None)


def test_cli_train_pairs_then_rerank(tmp_path, tiny_bert):
    train = write_sts(tmp_path / "train.csv", pair_rows(48, 0))
    out = tmp_path / "ce"
    runner = CliRunner()
    result = runner.invoke(main, [
        "train", "pairs", "--train", str(train), "--format", "tsv", "--no-header",
        "--first-column", "5", "--second-column", "6", "--target-column", "4",
        "--max-score", "5", "--from", str(tiny_bert), "--max-length", "32", "-o", str(out),
        "--max-steps", "2", "--batch-size", "16", "--head-lr", "3e-4", "--symmetric",
        "--no-progress"])
    assert result.exit_code == 0, result.output
    args = json.loads((out / "training_args.json").read_text())
    assert args["train_config"]["head_lr"] == 3e-4 and args["n_train"] == 96
    docs = tmp_path / "docs.txt"
    docs.write_text("cat dog bird\nfish horse cow\nsheep goat cat\n")
    ranked = runner.invoke(main, ["rerank", "cat dog", str(docs), "--model", str(out),
                                  "--top-k", "2", "--return-text"])
    assert ranked.exit_code == 0, ranked.output
    rows = [json.loads(line) for line in ranked.stdout.splitlines()]
    expected = CrossEncoder.from_pretrained(out).rank(
        "cat dog", docs.read_text().splitlines(), top_k=2)
    assert [r["id"] for r in rows] == [e.index + 1 for e in expected]  # ids are line numbers
    assert [r["rank"] for r in rows] == [1, 2]
    np.testing.assert_allclose([r["score"] for r in rows], [e.score for e in expected],
                               rtol=1e-6)


def test_training_a_cross_encoder_further_keeps_its_head(tmp_path, tiny_bert):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = train_pairs(sts_job(tmp_path / "a", tiny_bert),
                        TrainConfig(max_steps=2, batch_size=16, lr=1e-3), echo=lambda m: None)
    second = train_pairs(sts_job(tmp_path / "b", Path(first.output)),
                         TrainConfig(max_steps=1, batch_size=16, lr=1e-9), echo=lambda m: None)
    pairs = [(a, b) for a, b, _ in pair_rows(8, 5)]
    np.testing.assert_allclose(CrossEncoder.from_pretrained(second.output).predict(pairs),
                               CrossEncoder.from_pretrained(first.output).predict(pairs),
                               atol=1e-5)


def test_symmetric_trains_on_both_orders(tmp_path, tiny_bert):
    job = sts_job(tmp_path, tiny_bert, symmetric=True)
    result = train_pairs(job, TrainConfig(max_steps=1, batch_size=16), echo=lambda m: None)
    args = json.loads((Path(result.output) / "training_args.json").read_text())
    assert args["n_train"] == 2 * 96 and args["job"]["symmetric"] is True


def test_a_pair_and_its_reversal_never_share_a_batch(tmp_path, tiny_bert, monkeypatch):
    """--symmetric's reversed pairs, and pairs the data itself has both ways round, are as
    long as the pair, so length-grouped batches would put them together: no batch of any
    epoch holds both orders of a pair."""
    from seqenc.train import trainer

    plans = []
    plan_epoch = trainer.plan_epoch
    monkeypatch.setattr(trainer, "plan_epoch",
                        lambda *a, **k: plans.append(plan_epoch(*a, **k)) or plans[-1])
    rows = pair_rows(90, 0)
    rows += [(b, a, score) for a, b, score in rows[:6]]  # both ways round in the data too
    job = sts_job(tmp_path, tiny_bert, symmetric=True)
    write_sts(Path(job.train), rows)
    train_pairs(job, TrainConfig(epochs=2, batch_size=16), echo=lambda m: None)
    pairs = [frozenset((a, b)) for a, b, _ in rows + [(b, a, s) for a, b, s in rows]]
    assert len(plans) >= 2  # both epochs
    for plan in plans:
        assert sorted(np.concatenate(plan.batches).tolist()) == list(range(len(pairs)))
        for batch in plan.batches:
            assert len({pairs[i] for i in batch}) == len(batch)


def test_a_pair_and_its_reversal_never_share_an_accumulated_step(tmp_path, tiny_bert,
                                                                   monkeypatch):
    """With --grad-accum N one optimizer step sums the gradients of N micro-batches: no step
    of any epoch holds both orders of a pair in any of them, every example is trained on once
    per epoch, and the same seed gives the same steps."""
    from seqenc.train.trainer import Trainer

    taken: list[list[np.ndarray]] = []  # each optimizer step's micro-batches
    take = Trainer._step
    monkeypatch.setattr(Trainer, "_step", lambda self, micro, *a: taken.append(
        [m.copy() for m in micro]) or take(self, micro, *a))

    def steps_of(output: Path) -> list[list[np.ndarray]]:
        start = len(taken)
        output.mkdir()
        job = sts_job(output, tiny_bert, symmetric=True)
        write_sts(Path(job.train), rows)
        train_pairs(job, TrainConfig(epochs=2, batch_size=8, grad_accum=4),
                    echo=lambda m: None)
        return taken[start:]

    rows = pair_rows(90, 0)
    rows += [(b, a, score) for a, b, score in rows[:6]]  # both ways round in the data too
    pairs = [frozenset((a, b)) for a, b, _ in rows + [(b, a, s) for a, b, s in rows]]
    steps = steps_of(tmp_path / "a")
    assert max(len(micro) for micro in steps) == 4
    seen = np.concatenate([b for micro in steps for b in micro])
    assert sorted(seen.tolist()) == sorted(2 * list(range(len(pairs))))  # 2 epochs
    for micro in steps:
        step = np.concatenate(micro)
        assert len({pairs[i] for i in step}) == len(step)
    again = steps_of(tmp_path / "b")
    assert [np.concatenate(m).tolist() for m in again] == [np.concatenate(m).tolist()
                                                           for m in steps]


@pytest.mark.parametrize("accum", [1, 2])
def test_a_checkpoint_planned_before_pairs_kept_apart_resumes_only_where_the_plan_held(
        tmp_path, tiny_bert, accum):
    """Checkpoints written before a pair and its reversal were kept out of one accumulated
    step hold no plan number. With --grad-accum > 1 and reversals their epochs were planned
    otherwise, so resuming one mid-epoch is refused, naming the file and what to do; with
    --grad-accum 1 the plan is the same and it resumes."""
    from seqenc.train import checkpointing as ckpt
    from seqenc.train.data import PLAN_VERSION

    cfg = TrainConfig(epochs=2, batch_size=8, grad_accum=accum)
    job = sts_job(tmp_path, tiny_bert, symmetric=True)
    train_pairs(job, cfg, echo=lambda m: None, stop_after=3)
    state_file = Path(job.output) / "checkpoints" / "last" / ckpt.STATE_FILE
    state = torch.load(state_file, weights_only=True)
    assert state["plan"] == PLAN_VERSION and state["trainer"]["position"] == 3  # mid-epoch
    del state["plan"]  # as seqenc wrote it before plans had numbers
    torch.save(state, state_file)
    resume = dataclasses.replace(job, resume=True)
    if accum == 1:
        assert train_pairs(resume, cfg, echo=lambda m: None).finished
        return
    with pytest.raises(ValueError, match="older seqenc") as refused:
        train_pairs(resume, cfg, echo=lambda m: None)
    message = str(refused.value)
    assert str(state_file) in message and "--grad-accum" in message
    assert "without --resume" in message


def test_symmetric_from_a_new_head_with_a_held_out_split_does_not_leak(tmp_path, tiny_bert):
    """Reversed pairs are added after the dev split: no dev pair is trained on either way."""
    from seqenc.train.pairs import _read

    job = sts_job(tmp_path, tiny_bert, symmetric=True)
    job.dev, job.dev_fraction = None, 0.25
    train, dev = _read(job)
    result = train_pairs(job, TrainConfig(max_steps=2, batch_size=16, head_lr=1e-2),
                         echo=lambda m: None)
    args = json.loads((Path(result.output) / "training_args.json").read_text())
    # Doubling before the split would hold out 48 rows, some of them reversed train pairs.
    assert args["n_train"] == 2 * len(train) == 144 and args["n_dev"] == len(dev) == 24
    assert args["train_config"]["head_lr"] == 1e-2
