"""`seqenc evaluate` / `seqenc predict` on cross-encoders: correlations for scores, a
classification report for labels, one row per pair; checked against scipy on
sentence-transformers' and transformers' outputs for the same directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import pearsonr, spearmanr

from heads_support import write_bert_classifier
from seqenc.cli import main
from seqenc.crossencoder import CrossEncoder
from seqenc.exits import EXIT_INPUT, EXIT_USAGE
from seqenc.train.config import TrainConfig
from seqenc.train.pairs import train_pairs

from .test_pairs import pair_rows, sts_job, tiny_bert, write_sts  # noqa: F401 - fixture

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

STS = ["--format", "tsv", "--no-header", "--first-column", "5", "--second-column", "6",
       "--target-column", "4"]


@pytest.fixture(scope="module")
def bert1(tmp_path_factory) -> Path:
    return write_bert_classifier(tmp_path_factory.mktemp("ce1"), num_labels=1)


@pytest.fixture(scope="module")
def bert3(tmp_path_factory) -> Path:
    return write_bert_classifier(tmp_path_factory.mktemp("ce3"), num_labels=3, seed=1)


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_scores_give_the_correlations_of_the_peers_scores(tmp_path, bert1):
    rows = pair_rows(40, 3)
    sts = write_sts(tmp_path / "dev.csv", rows)
    result = run("evaluate", bert1, sts, *STS, "--max-score", "5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pairs = [(a, b) for a, b, _ in rows]
    ours = CrossEncoder.from_pretrained(bert1).predict(pairs, 64).astype(np.float64)  # as the CLI
    # The scores are the peer's (a random model's scores lie close together, so ranks can
    # swap on float noise: the correlations are checked on our scores, computed by scipy).
    peer = sentence_transformers.CrossEncoder(str(bert1), device="cpu")
    np.testing.assert_allclose(peer.predict(pairs), ours, atol=1e-6)
    gold = np.array([round(s, 3) for _, _, s in rows])  # as written to the file
    assert report["n"] == 40
    assert report["spearman"] == pytest.approx(spearmanr(ours, gold)[0], abs=1e-7)
    assert report["pearson"] == pytest.approx(pearsonr(ours, gold)[0], abs=1e-7)
    assert report["mse"] == pytest.approx(np.mean((ours - gold / 5) ** 2), abs=1e-7)
    text = run("evaluate", bert1, sts, *STS)
    assert text.exit_code == 0 and f"spearman  {report['spearman']:.4f}" in text.stdout
    assert "mse" not in text.stdout  # scores not scaled: correlations only


def test_evaluate_agrees_with_the_trainers_dev_figure(tmp_path, tiny_bert):  # noqa: F811
    job = sts_job(tmp_path, tiny_bert)
    trained = train_pairs(job, TrainConfig(max_steps=3, batch_size=16, lr=1e-3, eval_every=3),
                          echo=lambda m: None)
    result = run("evaluate", trained.output, job.dev, *STS, "--max-score", "5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["spearman"] == pytest.approx(trained.best_metrics["spearman"], abs=1e-6)
    assert report["pearson"] == pytest.approx(trained.best_metrics["pearson"], abs=1e-6)


def test_labels_give_the_classification_report_of_transformers_predictions(tmp_path, bert3):
    pairs = [(a, b) for a, b, _ in pair_rows(30, 4)]
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(bert3)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(bert3))
    with torch.no_grad():
        logits = hf(**tok([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                          return_tensors="pt")).logits
    predicted = logits.argmax(-1).numpy()
    gold = [(p + (i % 3 == 0)) % 3 for i, p in enumerate(predicted)]  # a third of them wrong
    data = tmp_path / "nli.jsonl"
    data.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": f"LABEL_{g}"})
                            + "\n" for (a, b), g in zip(pairs, gold, strict=True)))
    result = run("evaluate", bert3, data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == pytest.approx(np.mean(predicted == np.array(gold)))
    assert [c["label"] for c in report["per_class"]] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert "macro-F1" in run("evaluate", bert3, data).stdout
    # Predictions: the label of the largest probability, probabilities summing to 1.
    out = tmp_path / "pred.jsonl"
    assert run("predict", bert3, data, "-o", out).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == [f"LABEL_{p}" for p in predicted]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_predict_scores_every_pair_in_input_order(tmp_path, bert1):
    rows = pair_rows(12, 5)
    sts = write_sts(tmp_path / "test.csv", rows)
    expected = CrossEncoder.from_pretrained(bert1).predict([(a, b) for a, b, _ in rows])
    stdout = run("predict", bert1, sts, *STS[:-2])
    assert stdout.exit_code == 0, stdout.output
    got = [json.loads(line) for line in stdout.stdout.splitlines()]
    assert [r["line"] for r in got] == list(range(1, 13))
    np.testing.assert_allclose([r["score"] for r in got], expected, atol=1e-6)
    out = tmp_path / "scores.csv"
    assert run("predict", bert1, sts, *STS[:-2], "-o", out).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "line,score" and len(lines) == 13
    np.testing.assert_allclose([float(x.split(",")[1]) for x in lines[1:]], expected,
                               rtol=1e-5)


def test_bad_input_is_named_and_classifier_options_are_checked(tmp_path, bert1):
    sts = write_sts(tmp_path / "bad.csv", pair_rows(5, 6))
    lines = sts.read_text().splitlines()
    lines[3] = "\t".join(["genre", "file", "2012", "0003", "n/a", "one", "two"])
    sts.write_text("\n".join(lines) + "\n")
    bad = run("evaluate", bert1, sts, *STS)
    assert bad.exit_code == EXIT_INPUT and "bad.csv:4: field '4'" in bad.output \
        and "'n/a' is not a number" in bad.output
    (tmp_path / "not-ce").mkdir()
    (tmp_path / "not-ce" / "config.json").write_text(json.dumps(
        {"model_type": "bert", "architectures": ["BertModel"]}))
    wrong = run("predict", tmp_path / "not-ce", sts, "--first-column", "5")
    assert wrong.exit_code == EXIT_USAGE and "not one" in wrong.output
    txt = tmp_path / "q.txt"
    txt.write_text("just one text\n")
    assert run("predict", bert1, txt).exit_code == EXIT_INPUT
