"""Training data: labelled tables and plain-text corpora in, deterministic batch plans out.

Labelled tables are CSV, TSV, JSONL or parquet with a text and a label column. Headerless
TSV/CSV (``header=False``) name columns by 0-based index: text 0, label 1 unless told.
Every problem raises ``InputError`` naming file, line and column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqenc.io.errors import InputError
from seqenc.io.readers import decoded_lines, detect_format, open_binary

TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")


@dataclass
class Column:
    """A column by header name, or by 0-based index in a headerless file."""

    name: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        return self.name if self.name is not None else f"column {self.index}"


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
    """Command-line column names -> Columns. Defaults: sentence/label, or 0/1 without header."""
    if header:
        return Column(text_column or "sentence"), Column(label_column or "label")
    cols = []
    for given, default in ((text_column, 0), (label_column, 1)):
        if given is None:
            cols.append(Column(index=default))
        elif given.isdigit():
            cols.append(Column(index=int(given)))
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
    """Read (text, label) examples. With ``require_labels=False`` a missing label column is
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
    if fmt in ("csv", "tsv"):
        rows = _delimited(Path(path), name, text_col, label_col, header, fmt, require_labels)
    elif fmt == "jsonl":
        if not header:
            raise InputError("--no-header applies to csv and tsv only", file=name)
        rows = _jsonl(Path(path), name, str(text_col), str(label_col), require_labels)
    else:
        if not header:
            raise InputError("--no-header applies to csv and tsv only", file=name)
        rows = _parquet(Path(path), name, str(text_col), str(label_col), require_labels)
    texts, labels, lines = [], [], []
    for line, text, label in rows:
        texts.append(text)
        labels.append(label)
        lines.append(line)
    if not texts:
        raise InputError("no examples: the file is empty" + (" after its header" if header
                                                             else ""), file=name)
    return LabelledTexts(texts, labels, lines, name, str(label_col))


def _delimited(
    path: Path, name: str, text_col: Column, label_col: Column, header: bool, fmt: str,
    require_labels: bool,
) -> Iterator[tuple[int, str, str | None]]:
    # TSV is split on tabs with no quoting (as GLUE ships it); CSV is RFC 4180 via the csv
    # module, which tracks the line each (possibly multi-line) row starts on.
    with open_binary(path, name) as stream:
        lines = decoded_lines(stream, name)
        if fmt == "tsv":
            rows: Iterator[tuple[int, list[str]]] = (
                (n, text.split("\t")) for n, text in lines if text.strip()
            )
        else:
            rows = _csv_rows(lines, name)
        columns: dict[str, int] = {}
        width = None
        if header:
            try:
                header_line, names = next(rows)
            except StopIteration:
                raise InputError("empty file: expected a header row", file=name, line=1) from None
            columns = {col: i for i, col in enumerate(names)}
            width = len(names)
            for col, required in ((text_col, True), (label_col, require_labels)):
                if col.name not in columns and required:
                    raise InputError(
                        f"no such column; the header has {', '.join(map(repr, names))}",
                        file=name, line=header_line, field=col.name,
                    )
        text_i = columns[text_col.name] if header else text_col.index
        label_i = columns.get(label_col.name) if header else label_col.index
        for lineno, cells in rows:
            if width is not None and len(cells) != width:
                raise InputError(
                    f"row has {len(cells)} columns, the header has {width}", file=name,
                    line=lineno,
                )
            need = max(text_i, label_i if require_labels else -1)
            if len(cells) <= need:
                missing = text_col if len(cells) <= text_i else label_col
                raise InputError(
                    f"row has {len(cells)} column(s), no {missing}", file=name, line=lineno,
                )
            label = cells[label_i] if label_i is not None and label_i < len(cells) else None
            if require_labels and not label.strip():
                raise InputError("empty label", file=name, line=lineno, field=str(label_col))
            yield lineno, cells[text_i], label


def _csv_rows(lines: Iterator[tuple[int, str]], name: str) -> Iterator[tuple[int, list[str]]]:
    numbered = list(lines)  # the csv module needs the text; line numbers come from its counter
    reader = csv.reader((text + "\n" for _, text in numbered), strict=True)
    start = 1
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"cannot parse CSV: {e}", file=name, line=reader.line_num) from None


def _label_value(value: object, name: str, line: int, column: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        kind = "null" if value is None else type(value).__name__
        raise InputError(f"expected a string or integer label, got {kind}", file=name,
                         line=line, field=column)
    label = str(value)
    if not label.strip():
        raise InputError("empty label", file=name, line=line, field=column)
    return label


def _jsonl(
    path: Path, name: str, text_col: str, label_col: str, require_labels: bool
) -> Iterator[tuple[int, str, str | None]]:
    with open_binary(path, name) as stream:
        for lineno, text in decoded_lines(stream, name):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON ({e.msg} at column {e.colno})", file=name,
                                 line=lineno) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", file=name, line=lineno)
            if text_col not in obj:
                raise InputError("missing", file=name, line=lineno, field=text_col)
            if not isinstance(obj[text_col], str):
                raise InputError("expected a string", file=name, line=lineno, field=text_col)
            if label_col not in obj:
                if require_labels:
                    raise InputError("missing", file=name, line=lineno, field=label_col)
                yield lineno, obj[text_col], None
                continue
            yield lineno, obj[text_col], _label_value(obj[label_col], name, lineno, label_col)


def _parquet(
    path: Path, name: str, text_col: str, label_col: str, require_labels: bool
) -> Iterator[tuple[int, str, str | None]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("reading parquet needs pyarrow: pip install 'seqenc[io]'") from None
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise InputError("cannot read: no such file", file=name) from None
    except Exception as e:
        raise InputError(f"not a readable parquet file: {e}", file=name) from None
    for col, required in ((text_col, True), (label_col, require_labels)):
        if col not in schema.names and required:
            raise InputError(f"no such column; the file has {', '.join(schema.names)}",
                             file=name, field=col)
    has_label = label_col in schema.names
    table = pq.read_table(path, columns=[text_col] + ([label_col] if has_label else []))
    texts = table.column(text_col).to_pylist()
    labels = table.column(label_col).to_pylist() if has_label else [None] * len(texts)
    for row, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        if not isinstance(text, str):
            raise InputError("expected a string", file=name, line=row, field=text_col,
                             unit="row")
        if has_label:
            try:
                label = _label_value(label, name, row, label_col)
            except InputError as e:
                raise InputError(e.reason, file=name, line=row, field=label_col,
                                 unit="row") from None
        yield row, text, label


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


@dataclass
class BatchPlan:
    """One epoch's global batches: index arrays into the training set, in training order."""

    batches: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.batches)


def plan_epoch(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    group_by_length: bool = True,
    min_batch: int = 1,
    pool_batches: int = 50,
) -> BatchPlan:
    """Shuffle the examples; with ``group_by_length`` sort each pool of ``pool_batches`` batches
    by length and cut it into batches, then shuffle the batches. Texts of similar length share a
    batch (little padding) while each epoch's order stays random. The plan depends only on
    (lengths, batch_size, seed, epoch), so a resumed or a multi-process run sees the same one.
    Batches smaller than ``min_batch`` (the last one, at most) are dropped."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    if group_by_length:
        pool = batch_size * pool_batches
        for lo in range(0, len(order), pool):
            chunk = order[lo: lo + pool]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
        batches = [batches[i] for i in rng.permutation(len(batches))]
    else:
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    return BatchPlan([b for b in batches if len(b) >= min_batch])
