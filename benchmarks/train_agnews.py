"""AG News: a small encoder trained from scratch (no pretraining) against a bag-of-words
logistic-regression baseline, on the same train/dev split.

    python benchmarks/train_agnews.py                 # both, default settings
    python benchmarks/train_agnews.py --only bow      # just the baseline (seconds)
    python benchmarks/train_agnews.py --d-model 128 --layers 2 --vocab-size 8000  # other sizes

Data: ../shared/data/agnews/train.tsv (no header: text, label; 4 topics). There is no test
split here on purpose: the file is divided into train (90%) and dev (10%) with a fixed seed
(--split-seed), identically for both models. The WordPiece vocabulary of the encoder is learnt
from the train part only.

Baseline: scikit-learn CountVectorizer (unigram counts, lower-cased) + LogisticRegression;
its C is picked on dev from a grid, which favours the baseline. For reference a TF-IDF
unigram+bigram variant is reported as well.

Encoder defaults (1 layer, d_model 64, 4 heads, d_ff 256, dropout 0.3, WordPiece vocabulary
5,000, 128 tokens, AdamW lr 1e-3, 5 epochs, patience 3) were chosen on the dev split among the
configurations listed in benchmarks/TRAINING.md, as C is for the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "agnews" / "train.tsv"


def bag_of_words(train_texts, train_y, dev_texts, dev_y, labels) -> dict:
    from seqenc.train.metrics import classification_report

    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    results = {}
    variants = {
        "bow_unigram_logreg": CountVectorizer(lowercase=True),
        "tfidf_uni_bigram_logreg": TfidfVectorizer(lowercase=True, ngram_range=(1, 2),
                                                   sublinear_tf=True, min_df=1),
    }
    for name, vectorizer in variants.items():
        start = time.perf_counter()
        x_train = vectorizer.fit_transform(train_texts)
        x_dev = vectorizer.transform(dev_texts)
        best = None
        for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0):
            model = LogisticRegression(C=c, max_iter=3000)
            model.fit(x_train, train_y)
            report = classification_report(dev_y, model.predict(x_dev), labels)
            if best is None or report.accuracy > best[1].accuracy:
                best = (c, report)
        results[name] = {"dev_accuracy": best[1].accuracy, "dev_macro_f1": best[1].macro_f1,
                         "C": best[0], "features": x_train.shape[1],
                         "seconds": round(time.perf_counter() - start, 1)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["bow", "scratch"], default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "runs" / "agnews")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--vocab-size", type=int, default=5000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"AG News not found at {DATA}; this benchmark needs the shared workspace",
              file=sys.stderr)
        return 2

    from seqenc.train.data import encode_labels, infer_labels, read_labelled, split_indices

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data = read_labelled(DATA, header=False)
    keep, held = split_indices(len(data), args.dev_fraction, args.split_seed)
    train, dev = data.subset(keep), data.subset(held)
    labels = infer_labels(train)
    summary: dict = {"benchmark": "agnews-scratch-vs-bow", "n_train": len(train),
                     "n_dev": len(dev), "labels": labels, "split_seed": args.split_seed,
                     "command": " ".join(["python", *sys.argv])}
    if args.only in (None, "bow"):
        summary["baselines"] = bag_of_words(train.texts, encode_labels(train, labels),
                                            dev.texts, encode_labels(dev, labels), labels)
        print(json.dumps(summary["baselines"], indent=2), flush=True)
    if args.only in (None, "scratch"):
        from seqenc.train.config import TrainConfig
        from seqenc.train.recipes import ClassifyJob, train_classifier

        args.output.mkdir(parents=True, exist_ok=True)
        sizes = {"d_model": args.d_model, "n_heads": args.heads, "n_layers": args.layers,
                 "d_ff": 4 * args.d_model, "max_positions": args.max_length,
                 "dropout": args.dropout, "attention_dropout": args.dropout}
        sizes_file = args.output.parent / f"{args.output.name}-sizes.json"
        sizes_file.write_text(json.dumps(sizes, indent=2))
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          warmup_ratio=0.1, patience=args.patience, seed=args.seed,
                          weight_decay=args.weight_decay)
        job = ClassifyJob(train=str(DATA), output=str(args.output), header=False,
                          dev_fraction=args.dev_fraction, split_seed=args.split_seed,
                          config=str(sizes_file), tokenizer="train",
                          vocab_size=args.vocab_size, max_length=args.max_length)
        start = time.perf_counter()
        result = train_classifier(job, cfg, progress=True if args.progress else None)
        best = result.best_metrics or {}
        n_params = sum(p.numel() for p in _load_params(args.output))
        summary["scratch_encoder"] = {
            "dev_accuracy": best.get("accuracy"), "dev_macro_f1": best.get("macro_f1"),
            "best_step": result.best_step, "steps": result.steps,
            "stopped_early": result.stopped_early, "parameters": n_params, "sizes": sizes,
            "train_config": cfg.to_dict(), "train_seconds": round(result.seconds, 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
        }
    summary["threads"] = torch.get_num_threads()
    print(json.dumps(summary, indent=2))
    if args.only in (None, "scratch"):
        (args.output / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _load_params(directory: Path):
    from safetensors.torch import load_file

    tensors = load_file(str(directory / "model.safetensors"))
    tensors.update(load_file(str(directory / "classifier.safetensors")))
    return list(tensors.values())


if __name__ == "__main__":
    sys.exit(main())
