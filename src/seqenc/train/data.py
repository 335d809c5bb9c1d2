"""Training data: labelled tables and plain-text corpora in, deterministic batch plans out.

Labelled tables are CSV, TSV, JSONL or parquet with a text and a label column, read by
``seqenc.io.tables`` under the same rules as ``seqenc encode``. Headerless TSV/CSV
(``header=False``) name columns by 0-based index: text 0, label 1 unless told. Every problem
raises ``InputError`` naming file, line and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqenc.io.errors import InputError
from seqenc.io.lines import decoded_lines, open_binary
from seqenc.io.readers import detect_format
from seqenc.io.tables import Column, Table, column_name, open_table, value_type


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[str | None]  # None where the file has no label column (prediction input)
    lines: list[int]  # where each example starts in its file, for error messages
    source: str
    label_column: str = "label"

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.lines[i] for i in indices],
            self.source,
            self.label_column,
        )


def resolve_columns(
    text_column: str | None, label_column: str | None, header: bool
) -> tuple[Column, Column]:
    """Command-line column names -> columns. Defaults: sentence/label, or 0/1 without header."""
    if header:
        return text_column or "sentence", label_column or "label"
    cols: list[Column] = []
    for given, default in ((text_column, 0), (label_column, 1)):
        if given is None:
            cols.append(default)
        elif given.isdigit():
            cols.append(int(given))
        else:
            raise InputError(
                f"without a header, columns are 0-based indices; got column {given!r}"
            )
    return cols[0], cols[1]


def read_labelled(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    header: bool = True,
    fmt: str | None = None,
    require_labels: bool = True,
) -> LabelledTexts:
    """Read (text, label) examples with ``seqenc.io.tables`` (the reader ``seqenc encode``
    uses, with its csv/tsv rules). With ``require_labels=False`` a missing label column is
    allowed (labels are None) and ``.txt`` files are read one text per line."""
    name = str(path)
    fmt = detect_format(path, fmt)
    if fmt == "txt":
        if require_labels:
            raise InputError(
                "a .txt file has no label column; use csv, tsv, jsonl or parquet", file=name
            )
        texts = read_corpus(path, skip_blank=False)
        return LabelledTexts(texts, [None] * len(texts), list(range(1, len(texts) + 1)), name)
    text_col, label_col = resolve_columns(text_column, label_column, header)
    table = open_table(path, fmt, required=[text_col, label_col] if require_labels else [text_col],
                       optional=[] if require_labels else [label_col], strings=[text_col],
                       header=header)
    texts, labels, lines = [], [], []
    try:
        for row in table.rows:
            if isinstance(row, InputError):
                raise row
            label = row.values.get(label_col)
            if label is not None or label_col in row.values:
                label = _label_value(label, table, row.line, label_col)
            texts.append(row.values[text_col])
            labels.append(label)
            lines.append(row.line)
    finally:
        table.close()
    if not texts:
        raise InputError("no examples: the file is empty" + (" after its header" if header
                                                             else ""), file=name)
    return LabelledTexts(texts, labels, lines, name, column_name(label_col))


def _label_value(value: object, table: Table, line: int, column: Column) -> str:
    def bad(reason: str) -> InputError:
        return InputError(reason, file=table.name, line=line, field=column_name(column),
                          unit=table.unit)

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad(f"expected a string or integer label, got {value_type(value)}")
    label = str(value)
    if not label.strip():
        raise bad("empty label")
    return label


def read_corpus(path: str | Path, *, skip_blank: bool = True) -> list[str]:
    """A plain-text corpus, one text per line (blank lines skipped unless told)."""
    name = str(path)
    with open_binary(Path(path), name) as stream:
        texts = [t for _, t in decoded_lines(stream, name) if t.strip() or not skip_blank]
    if not texts:
        raise InputError("no text: the file is empty", file=name)
    return texts


# -- labels ------------------------------------------------------------------------------------


def infer_labels(data: LabelledTexts) -> list[str]:
    """The sorted label set (numerically when every label is an integer)."""
    found = set(data.labels)
    if None in found:
        raise InputError("some examples have no label", file=data.source)
    if len(found) < 2:
        only = next(iter(found))
        raise InputError(
            f"only one label ({only!r}) in {len(data)} examples; a classifier needs at least two",
            file=data.source, field=data.label_column,
        )
    if all(_is_int(label) for label in found):
        return sorted(found, key=int)
    return sorted(found)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def encode_labels(data: LabelledTexts, labels: Sequence[str]) -> np.ndarray:
    """Label strings -> class indices; an unknown label is an error naming its line."""
    index = {label: i for i, label in enumerate(labels)}
    out = np.empty(len(data), dtype=np.int64)
    for i, (label, line) in enumerate(zip(data.labels, data.lines, strict=True)):
        if label not in index:
            raise InputError(
                f"label {label!r} is not one of the model's labels ({', '.join(labels)})",
                file=data.source, line=line, field=data.label_column,
            )
        out[i] = index[label]
    return out


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle 0..n-1 with ``seed`` and hold out ``fraction`` of them: (train, held_out)."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_held = max(1, round(n * fraction))
    if n_held >= n:
        raise ValueError(f"cannot hold out {fraction:.0%} of {n} examples and keep some to train")
    return np.sort(order[n_held:]), np.sort(order[:n_held])


# -- batching ----------------------------------------------------------------------------------


# plan_epoch's way of ordering an epoch, saved with every training checkpoint: a change that
# orders the same arguments' epochs otherwise takes the next number, and plan_change says
# which runs it changes, so that no checkpoint resumes on another plan than the one it began
# (its saved position would then point into other steps: examples skipped or seen twice).
# 1: until 2026-12-02 (checkpoints hold no number). 2: with groups and accum > 1, each
#    stratum's batches are cut into steps before the steps are shuffled (a pair and its
#    reversal never share a step), where version 1 shuffled the batches, then cut the steps.
PLAN_VERSION = 2


def plan_change(version: int, groups: np.ndarray | None, accum: int) -> str | None:
    """How plan_epoch now orders a run of ``groups`` and ``accum`` otherwise than it did in
    ``version``; None where the plans are the same."""
    if version < 2 and accum > 1 and _grouped(groups):
        return ("--grad-accum > 1 with pairs and their reversals: a pair and its reversal now "
                "never share an optimizer step, so every epoch's steps differ")
    return None


def _grouped(groups: np.ndarray | None) -> bool:
    """Whether ``groups`` puts any two examples in one group (else it changes no plan)."""
    return groups is not None and len(np.unique(groups)) < len(groups)


@dataclass
class BatchPlan:
    """One epoch's optimizer steps, in training order: each a list of micro-batches (``accum``
    of them, fewer for an epoch's or a stratum's last step), each an index array into the
    training set."""

    steps: list[list[np.ndarray]] = field(default_factory=list)

    @property
    def batches(self) -> list[np.ndarray]:
        """Every micro-batch, in training order."""
        return [batch for step in self.steps for batch in step]

    def __len__(self) -> int:
        return sum(len(step) for step in self.steps)


def plan_epoch(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    group_by_length: bool = True,
    min_batch: int = 1,
    pool_batches: int = 50,
    groups: np.ndarray | None = None,
    accum: int = 1,
) -> BatchPlan:
    """Shuffle the examples; with ``group_by_length`` sort each pool of ``pool_batches`` batches
    by length and cut it into batches, then shuffle the batches. Texts of similar length share a
    batch (little padding) while each epoch's order stays random. Consecutive batches, ``accum``
    at a time, make one optimizer step (gradient accumulation). The plan depends only on
    (lengths, batch_size, seed, epoch, groups, accum), so a resumed or a multi-process run sees
    the same one. Examples with the same ``groups`` id never share a step (a pair and its
    reversal: same length, so sorting by length would put them side by side): the k members of
    a group go, in random order, to k separate strata, each batched and cut into steps on its
    own, and the steps are shuffled whole. Batches smaller than ``min_batch`` (the last of each
    stratum, at most) are dropped."""
    rng = np.random.default_rng([seed, epoch])
    if not _grouped(groups):
        groups = None  # every group of one: the same plan as without groups
    if groups is None:
        batches = _batches(rng.permutation(len(lengths)), lengths, batch_size, group_by_length,
                           pool_batches)
        if group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        batches = [b for b in batches if len(b) >= min_batch]
        return BatchPlan(_steps(batches, accum))
    rank = _rank_in_group(np.asarray(groups), rng)
    steps: list[list[np.ndarray]] = []
    for stratum in range(int(rank.max(initial=-1)) + 1):
        members = np.flatnonzero(rank == stratum)
        steps += _steps(_batches(members[rng.permutation(len(members))], lengths, batch_size,
                                 group_by_length, pool_batches), accum)
    steps = [steps[i] for i in rng.permutation(len(steps))]  # (accum 1: the batches shuffled)
    steps = [[b for b in step if len(b) >= min_batch] for step in steps]
    return BatchPlan([step for step in steps if step])


def _steps(batches: list[np.ndarray], accum: int) -> list[list[np.ndarray]]:
    return [batches[i: i + accum] for i in range(0, len(batches), accum)]


def _batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, group_by_length: bool,
             pool_batches: int) -> list[np.ndarray]:
    """``order`` (shuffled example indices) cut into batches; with ``group_by_length`` each
    pool of ``pool_batches`` batches sorted by length first."""
    if not group_by_length:
        return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[np.ndarray] = []
    pool = batch_size * pool_batches
    for lo in range(0, len(order), pool):
        chunk = order[lo: lo + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
    return batches


def _rank_in_group(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each example's place among its group's members, the members in random order:
    0 .. group size - 1."""
    order = np.lexsort((rng.permutation(len(groups)), groups))  # by group, ties at random
    ordered = groups[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    return rank
