"""Silver sentence pairs scored by a bi-encoder, for augmented-SBERT-style distillation.

Stage 1 of the STS-B cross-encoder recipe in benchmarks/TRAINING.md trains the cross-encoder on
many pairs that a bi-encoder (the teacher: seqenc's default all-MiniLM-L6-v2 unless told) has
scored, stage 2 on the gold pairs. This script makes stage 1's data from the *training* file's
sentences only, sampled as the Augmented SBERT paper's semantic-search sampling does:

- every distinct sentence of ``--train`` is encoded by the teacher (its own pooling,
  L2-normalised), and paired with its ``--top-k`` nearest neighbours by cosine among the other
  training sentences (near-paraphrases and same-topic sentences: the high and middle scores),
  plus ``--random`` random partners (the low scores);
- pairs are unordered and kept once, each put in a random order (seeded); the gold pairs of
  ``--train`` are left out (stage 2 trains on them with their gold scores) unless
  ``--keep-gold`` adds them with the teacher's score; left out too is every pair of each
  ``--exclude`` file (e.g. the dev set: its gold scores are never read, and none of its pairs
  gets a silver score);
- score = the teacher's cosine mapped onto the gold scale, fitted on the training file's own
  gold pairs: ``quantile`` (default) sends a cosine at the q-th quantile of the gold pairs'
  cosines to the q-th quantile of their scores / max-score (monotone, piecewise linear, the
  whole [0, 1] range: on gold-like pairs the silver scores are distributed as the gold ones);
  ``fit`` is the least-squares line, clipped to [0, 1] (lowest MSE, but it shrinks towards the
  mean: here it never exceeds 0.88); ``clip`` is max(cos, 0), ``shift`` (cos + 1) / 2. How
  each one matches the gold scores on the training pairs is printed, so the choice can be
  checked.

Output: a headerless TSV in STS-B's own layout (genre, file, year, id, score, sentence1,
sentence2; genre ``silver``, file ``nn<rank>``, ``random`` or ``gold``), scores on the
0-``max-score`` scale, so `seqenc train pairs` reads it with the same options as the gold file:

    python benchmarks/sts_silver.py --train ../shared/data/stsbenchmark/sts-train.csv \\
        --exclude ../shared/data/stsbenchmark/sts-dev.csv -o benchmarks/runs/sts-silver.tsv
    seqenc train pairs --train benchmarks/runs/sts-silver.tsv \\
        --dev ../shared/data/stsbenchmark/sts-dev.csv --format tsv --no-header \\
        --first-column 5 --second-column 6 --target-column 4 --max-score 5 ... -o runs/stage1

Only the files named on the command line are read; the output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

import numpy as np

MAPPINGS = ("quantile", "fit", "clip", "shift")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="Gold training pairs (their sentences are "
                   "the only ones paired; their scores fit the score mapping).")
    p.add_argument("-o", "--output", required=True, help="Silver TSV to write.")
    p.add_argument("--exclude", action="append", default=[],
                   help="Pairs file (same layout as --train) whose pairs must not appear in the "
                        "output; repeatable. Only its sentence columns are read.")
    p.add_argument("--teacher", default="default", help="Bi-encoder name or directory.")
    p.add_argument("--top-k", type=int, default=3, help="Nearest neighbours per sentence.")
    p.add_argument("--random", type=int, default=1, help="Random partners per sentence.")
    p.add_argument("--mapping", choices=MAPPINGS, default="quantile")
    p.add_argument("--keep-gold", action="store_true",
                   help="Add the gold pairs of --train too, with the teacher's score.")
    p.add_argument("--limit", type=int, default=None,
                   help="Use only the first N gold pairs' sentences (a quick sample).")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="Keep at most this many silver pairs (a seeded random subset).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", dest="fmt", default="tsv")
    p.add_argument("--header", action="store_true", help="The input files have a header row.")
    p.add_argument("--first-column", default="5")
    p.add_argument("--second-column", default="6")
    p.add_argument("--target-column", default="4")
    p.add_argument("--max-score", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--report", default=None, help="Also write the summary as JSON here.")
    return p.parse_args(argv)


def neighbours(vectors: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) indices and cosines of each row's k most similar other rows (rows are unit
    vectors), best first; the (N, N) similarity matrix is never held whole."""
    n = len(vectors)
    k = min(k, n - 1)
    index = np.empty((n, k), dtype=np.int64)
    cosine = np.empty((n, k), dtype=np.float32)
    for lo in range(0, n, block):
        sims = vectors[lo: lo + block] @ vectors.T  # (b, N)
        rows = np.arange(len(sims))
        sims[rows, lo + rows] = -np.inf  # not itself
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.argsort(-sims)
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        index[lo: lo + block] = top
        cosine[lo: lo + block] = np.take_along_axis(sims, top, axis=1)
    return index, cosine


def mapping_for(cos: np.ndarray, gold: np.ndarray, mapping: str
                ) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The cosine -> [0, 1] score function ``mapping`` names, fitted on the gold training
    pairs' cosines ``cos`` and scores ``gold`` (already in [0, 1]), and how to write it."""
    if mapping == "quantile":  # the gold pairs' cosine quantiles onto their score quantiles
        xs, ys = np.sort(cos.astype(np.float64)), np.sort(gold.astype(np.float64))
        return (lambda c: np.interp(c, xs, ys)), "gold quantile of the cosine's quantile"
    if mapping == "fit":
        slope, intercept = np.polyfit(cos.astype(np.float64), gold.astype(np.float64), 1)
    else:
        slope, intercept = {"clip": (1.0, 0.0), "shift": (0.5, 0.5)}[mapping]
    return ((lambda c: np.clip(slope * c + intercept, 0.0, 1.0)),
            f"clip({slope:.3f} * cos + {intercept:.3f}, 0, 1)")


def histogram(scores: np.ndarray, bins: int = 5) -> list[int]:
    return np.histogram(scores, bins=bins, range=(0.0, 1.0))[0].tolist()


def read(path: str, args: argparse.Namespace, need_scores: bool):
    from seqenc.train.pairs import read_pairs, scores_of

    data = read_pairs(path, args.first_column, args.second_column, args.target_column,
                      header=args.header, fmt=args.fmt)
    return data, scores_of(data, args.target_column, args.max_score) if need_scores else None


def build(args: argparse.Namespace, echo=print) -> dict:
    from seqenc import SentenceEncoder
    from seqenc.threads import set_threads

    set_threads(args.threads)
    gold, gold_y = read(args.train, args, need_scores=True)
    if args.limit is not None:
        gold, gold_y = gold.subset(range(min(args.limit, len(gold)))), gold_y[: args.limit]
    sentences = list(dict.fromkeys(gold.firsts + gold.seconds))  # distinct, first-seen order
    where = {s: i for i, s in enumerate(sentences)}
    banned = set()
    if not args.keep_gold:
        banned |= {frozenset((where[a], where[b]))
                   for a, b in zip(gold.firsts, gold.seconds, strict=True)}
    n_excluded_pairs = 0
    for path in args.exclude:
        other, _ = read(path, args, need_scores=False)
        for a, b in zip(other.firsts, other.seconds, strict=True):
            if a in where and b in where:
                banned.add(frozenset((where[a], where[b])))
                n_excluded_pairs += 1

    teacher = SentenceEncoder.from_pretrained(args.teacher)
    start = time.perf_counter()
    vectors = teacher.encode(sentences, batch_size=args.batch_size, normalize=True)
    encode_s = time.perf_counter() - start
    echo(f"teacher: {len(sentences):,} distinct sentences encoded in {encode_s:.1f} s")

    gold_cos = np.einsum("nd,nd->n", vectors[[where[s] for s in gold.firsts]],
                         vectors[[where[s] for s in gold.seconds]])
    mappings = {m: mapping_for(gold_cos, gold_y, m) for m in MAPPINGS}
    quality = {}
    for m, (function, formula) in mappings.items():
        mapped = function(gold_cos)
        quality[m] = {"formula": formula, "mse_vs_gold": round(float(np.mean((mapped - gold_y)
                                                                           ** 2)), 5),
                      "mean": round(float(mapped.mean()), 4), "histogram": histogram(mapped)}
        echo(f"mapping {m:8s}: {formula}; on the {len(gold):,} gold training pairs MSE vs "
             f"gold/{args.max_score:g} {quality[m]['mse_vs_gold']:.4f}, mean "
             f"{quality[m]['mean']:.3f} (gold {gold_y.mean():.3f}), histogram "
             f"{quality[m]['histogram']} (gold {histogram(gold_y)})")
    from scipy.stats import spearmanr

    teacher_spearman = float(spearmanr(gold_cos, gold_y)[0])
    echo(f"teacher Spearman on the gold training pairs: {100 * teacher_spearman:.2f}")

    rng = np.random.default_rng(args.seed)
    pairs: dict[frozenset, tuple[int, int, str, float]] = {}
    if args.keep_gold:  # the gold pairs themselves, with the teacher's score
        for a, b, c in zip(gold.firsts, gold.seconds, gold_cos, strict=True):
            key = frozenset((where[a], where[b]))
            if key not in banned and len(key) == 2:
                pairs.setdefault(key, (where[a], where[b], "gold", float(c)))
    if args.top_k > 0:
        index, cosine = neighbours(vectors, args.top_k)
        for i in range(len(sentences)):
            for rank, (j, c) in enumerate(zip(index[i], cosine[i], strict=True), start=1):
                key = frozenset((i, int(j)))
                if key not in banned and key not in pairs:
                    pairs[key] = (i, int(j), f"nn{rank}", float(c))
    for i in range(len(sentences)):
        for _ in range(args.random):
            j = int(rng.integers(len(sentences) - 1))
            j += j >= i  # any other sentence
            key = frozenset((i, j))
            if key not in banned and key not in pairs:
                pairs[key] = (i, j, "random", float(vectors[i] @ vectors[j]))
    chosen = list(pairs.values())
    if args.max_pairs is not None and len(chosen) > args.max_pairs:
        keep = np.sort(rng.choice(len(chosen), args.max_pairs, replace=False))
        chosen = [chosen[k] for k in keep]
    flip = rng.random(len(chosen)) < 0.5  # either order: the task is symmetric
    cos = np.array([c[3] for c in chosen], dtype=np.float32)
    silver = mappings[args.mapping][0](cos)

    from seqenc.io import atomic_path

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for n, ((i, j, kind, _), score, swap) in enumerate(zip(chosen, silver, flip,
                                                              strict=True)):
            a, b = (sentences[j], sentences[i]) if swap else (sentences[i], sentences[j])
            f.write(f"silver\t{kind}\t-\t{n:06d}\t{score * args.max_score:.4f}\t{a}\t{b}\n")

    kinds = {}
    for (_, _, kind, _), s in zip(chosen, silver, strict=True):
        kinds.setdefault(kind, []).append(s)
    summary = {
        "train": args.train, "exclude": args.exclude, "teacher": args.teacher,
        "output": str(out), "gold_pairs": len(gold), "sentences": len(sentences),
        "excluded_pairs_seen": n_excluded_pairs, "silver_pairs": len(chosen),
        "top_k": args.top_k, "random": args.random, "mapping": args.mapping,
        "mappings": quality, "teacher_spearman_on_gold_train": round(teacher_spearman, 4),
        "encode_s": round(encode_s, 1),
        "histogram_bins": "5 equal bins of score/max_score over [0, 1]",
        "gold_histogram": histogram(gold_y), "silver_histogram": histogram(silver),
        "by_kind": {k: {"pairs": len(v), "mean": round(float(np.mean(v)), 4)}
                    for k, v in sorted(kinds.items())},
    }
    echo(f"wrote {len(chosen):,} silver pairs to {out}; score histogram (5 bins) "
         f"{summary['silver_histogram']} vs gold {summary['gold_histogram']}; by kind "
         + ", ".join(f"{k} {v['pairs']:,} (mean {v['mean']:.2f})"
                     for k, v in summary["by_kind"].items()))
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    build(parse_args(argv), echo=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
