"""One table reader for ``seqenc encode`` and for training: csv, tsv, jsonl and parquet rows.

The rules, the same for every caller:

- **CSV** is RFC 4180, parsed by the csv module: a field may be quoted with ``"``, a quote
  inside a quoted field is doubled, and a quoted field may span lines.
- **TSV** is one row per line, cut at every tab, with no quoting and no escaping: quotes and
  backslashes are text, as in GLUE's files and IANA's ``text/tab-separated-values`` (whose
  cells cannot hold a tab or a line break). AG News, for one, has cells that start with ``"``.
- CSV and TSV have a header row, the first non-empty line, unless ``header=False``; then the
  columns are 0-based indices and a row may have any number of cells. An empty line carries
  no row and is not counted; every other line is a row, a line of spaces included (in a
  one-column file that is a text of spaces), and a row whose cell count differs from the
  header's is an error at its line.
- **JSONL** holds one JSON object per line; a line of whitespace carries no row (whitespace
  between JSON values means nothing).
- **parquet** is read in batches of rows, only the columns asked for; binary columns are
  decoded as UTF-8.

Everywhere: UTF-8 (a leading BOM is dropped) and lines end with ``\\n`` or ``\\r\\n``. Rows
are numbered from 1, the header and blank lines not counted; ``line`` is where a row starts
(the row number for parquet). A bad row is yielded as an ``InputError`` in its place, naming
file, line and column, so that the caller chooses to stop or skip; a problem with the file as
a whole (missing, no header, no such column, CSV the parser lost its place in) raises.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from seqenc.extras import require

from .errors import InputError
from .lines import decode, open_binary, raw_lines, strip_eol

TABLE_FORMATS = ("jsonl", "csv", "tsv", "parquet")
STDIN = "-"
Column = str | int  # a header name, or a 0-based index in a headerless csv/tsv
_PARQUET_BATCH = 1024  # rows decoded at a time: bounds memory whatever the row-group size


class Row(NamedTuple):
    number: int  # 1-based, header and blank lines not counted
    line: int  # where the row starts: line number, or row number for parquet
    values: dict  # column -> value; every required column is present


@dataclass
class Table:
    """The rows of one open table; ``close`` releases the file (never stdin)."""

    name: str  # the file as messages name it ("<stdin>" for stdin)
    format: str
    rows: Iterator[Row | InputError]
    header: list[str] | None  # csv/tsv header or parquet columns; None for jsonl, headerless
    total: int | None = None  # number of rows when the format knows it up front (parquet)
    close: Callable[[], None] = lambda: None

    @property
    def unit(self) -> str:
        return "row" if self.format == "parquet" else "line"


def column_name(column: Column) -> str:
    """How messages name a column: its header name, or "column N" without a header."""
    return column if isinstance(column, str) else f"column {column}"


def value_type(value: object) -> str:
    """The JSON name of a value's type (object, array, string, number, boolean, null)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def open_table(
    source: str | Path,
    fmt: str,
    *,
    required: Sequence[Column],
    optional: Sequence[Column] = (),
    strings: Sequence[Column] = (),
    header: bool = True,
    stdin: BinaryIO | None = None,
) -> Table:
    """Open ``source`` (a path, or ``"-"`` for stdin) as a ``fmt`` table.

    Rows must hold every ``required`` column; ``optional`` ones are read when present; the
    values of ``strings`` columns must be strings. Whatever can be checked before the first
    row (the file, its header, the columns) is checked here, so callers fail fast.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"not a table format: {fmt!r}")
    is_stdin = str(source) == STDIN
    name = "<stdin>" if is_stdin else str(source)
    if not header and fmt not in ("csv", "tsv"):
        raise InputError("--no-header applies to csv and tsv only", file=name)
    if fmt == "parquet":
        if is_stdin:
            raise InputError("parquet cannot be read from stdin; pass a file", file=name)
        return _parquet(Path(source), name, required, optional, strings)
    if is_stdin:
        stream, close = (stdin if stdin is not None else sys.stdin.buffer), (lambda: None)
    else:
        stream = open_binary(Path(source))
        close = stream.close
    try:
        if fmt == "jsonl":
            rows, columns = _jsonl(stream, name), None
        else:
            cells = _csv_cells(stream, name) if fmt == "csv" else _tsv_cells(stream, name)
            rows, columns = _delimited(cells, name, header, required)
    except BaseException:
        close()
        raise
    checked = (_check(row, name, "line", required, strings) for row in rows)
    return Table(name, fmt, checked, columns, close=close)


def _check(
    row: Row | InputError,
    name: str,
    unit: str,
    required: Sequence[Column],
    strings: Sequence[Column],
) -> Row | InputError:
    """The row, or an InputError for its first column that is missing or not a string."""
    if isinstance(row, InputError):
        return row
    for column in dict.fromkeys([*required, *strings]):
        if column not in row.values:
            reason = "missing" if column in required else None
        elif column in strings and not isinstance(row.values[column], str):
            reason = f"expected a string, got {value_type(row.values[column])}"
        else:
            reason = _lone_surrogate(row.values[column])
        if reason is not None:
            return InputError(reason, file=name, line=row.line, field=column_name(column),
                              unit=unit)
    return row


def _lone_surrogate(value: object) -> str | None:
    """JSON's "\\ud800" decodes to a lone surrogate: not text, and the tokenizer refuses it."""
    if not isinstance(value, str) or value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"not valid Unicode: a lone surrogate U+{ord(value[e.start]):04X} at "
                f"character {e.start}")
    return None


# -- csv and tsv ------------------------------------------------------------------------------

# (line the row starts on, cells, the row's first bad UTF-8 or None); no cells: an empty line
_Cells = Iterator[tuple[int, list[str], InputError | None]]


def _csv_cells(stream: BinaryIO, name: str) -> _Cells:
    # Lines are decoded leniently for the csv module and strictly on the side, so that one
    # bad byte rejects only the row it is in, at its exact offset.
    bad_bytes: dict[int, InputError] = {}

    def text_lines() -> Iterator[str]:
        for lineno, offset, raw in raw_lines(stream):
            strict = decode(raw, name, lineno, offset)
            if isinstance(strict, InputError):
                bad_bytes[lineno] = strict
                yield raw.decode("utf-8", "surrogateescape")
            else:
                yield strict

    reader = csv.reader(text_lines(), strict=True)
    last_line = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # The parser's state is unknown after this, so no row after it can be trusted.
            raise InputError(f"cannot parse CSV: {e}", file=name, line=reader.line_num) from None
        first_line, last_line = last_line + 1, reader.line_num
        broken = [bad_bytes.pop(n) for n in range(first_line, last_line + 1) if n in bad_bytes]
        yield first_line, cells, broken[0] if broken else None


def _tsv_cells(stream: BinaryIO, name: str) -> _Cells:
    for lineno, offset, raw in raw_lines(stream):
        line = strip_eol(raw)
        text = decode(line, name, lineno, offset)
        broken = text if isinstance(text, InputError) else None
        if broken is not None:
            text = line.decode("utf-8", "surrogateescape")
        yield lineno, text.split("\t") if text else [], broken


def _delimited(
    cells: _Cells, name: str, header: bool, required: Sequence[Column]
) -> tuple[Iterator[Row | InputError], list[str] | None]:
    """Read the header now (so a missing column fails at once); the rows lazily."""
    names: list[str] | None = None
    if header:
        first = next((row for row in cells if row[1]), None)  # the first non-empty line
        if first is None:
            raise InputError("empty file: expected a header row", file=name, line=1)
        header_line, names, broken = first
        if broken is not None:
            raise broken
        for column in required:
            if column not in names:
                raise InputError(f"no such column; the header has {', '.join(map(repr, names))}",
                                 file=name, line=header_line, field=column_name(column))
    return _delimited_rows(cells, name, names, required), names


def _delimited_rows(
    cells: _Cells, name: str, names: list[str] | None, required: Sequence[Column]
) -> Iterator[Row | InputError]:
    number = 0
    for line, row, broken in cells:
        if not row:
            continue  # an empty line
        number += 1
        if broken is not None:
            # The lenient decode left the bad bytes as lone surrogates: they tell the column
            # (a short row has fewer cells than the header, hence strict=False).
            columns = names or range(len(row))
            bad = next((c for c, v in zip(columns, row, strict=False) if _has_bad_bytes(v)), None)
            yield InputError(broken.reason, file=name, line=broken.line,
                             field=None if bad is None else column_name(bad))
        elif names is None:
            missing = next((c for c in required if c >= len(row)), None)
            if missing is None:
                yield Row(number, line, dict(enumerate(row)))
            else:
                yield InputError(f"row has {len(row)} column(s), no {column_name(missing)}",
                                 file=name, line=line)
        elif len(row) != len(names):
            yield InputError(f"row has {len(row)} columns, the header has {len(names)}",
                             file=name, line=line)
        else:
            yield Row(number, line, dict(zip(names, row, strict=True)))


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


# -- jsonl ------------------------------------------------------------------------------------


def _jsonl(stream: BinaryIO, name: str) -> Iterator[Row | InputError]:
    number = 0
    for lineno, offset, raw in raw_lines(stream):
        line = decode(strip_eol(raw), name, lineno, offset)
        if isinstance(line, InputError):
            yield line
            continue
        if not line.strip():
            continue  # blank lines (often a trailing one) carry no row
        number += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield InputError(f"not valid JSON ({e.msg} at column {e.colno})", file=name,
                             line=lineno)
            continue
        if not isinstance(obj, dict):
            yield InputError(f"expected a JSON object, got {value_type(obj)}", file=name,
                             line=lineno)
            continue
        yield Row(number, lineno, obj)


# -- parquet ----------------------------------------------------------------------------------


def _parquet(
    path: Path,
    name: str,
    required: Sequence[Column],
    optional: Sequence[Column],
    strings: Sequence[Column],
) -> Table:
    pa = require("pyarrow", "reading parquet")
    pq = require("pyarrow.parquet", "reading parquet")
    if path.is_dir():
        raise InputError("cannot read input: is a directory", file=name)
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError as e:
        raise InputError(f"cannot read input: {e.strerror or e}", file=name) from None
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"not a readable parquet file: {e}", file=name) from None
    schema = pf.schema_arrow
    try:
        for column in required:
            if column not in schema.names:
                raise InputError(
                    f"no such column; the file has {', '.join(map(repr, schema.names))}",
                    file=name, field=column_name(column))
        columns = [c for c in dict.fromkeys([*required, *optional]) if c in schema.names]
        for column in strings:
            kind = schema.field(column).type if column in columns else None
            if kind is not None and not (_is_string(pa, kind) or _is_binary(pa, kind)):
                raise InputError(f"expected a string column, got {kind}", file=name,
                                 field=column)
    except InputError:
        pf.close()
        raise

    def rows() -> Iterator[Row | InputError]:
        number = 0
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
                values = [batch.column(c).to_pylist() for c in columns]
                for row in zip(*values, strict=True):
                    number += 1
                    yield _parquet_row(number, dict(zip(columns, row, strict=True)), name)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"cannot read parquet: {e}", file=name, line=number + 1,
                             unit="row") from None

    checked = (_check(row, name, "row", required, strings) for row in rows())
    return Table(name, "parquet", checked, list(schema.names), pf.metadata.num_rows, pf.close)


def _parquet_row(number: int, values: dict, name: str) -> Row | InputError:
    for column, value in values.items():
        if isinstance(value, bytes):  # a binary column: its text must still be UTF-8
            try:
                values[column] = value.decode("utf-8")
            except UnicodeDecodeError as e:
                return InputError(
                    f"invalid UTF-8 (byte 0x{value[e.start]:02x} at offset {e.start} in the "
                    "value)", file=name, line=number, field=column, unit="row")
    return Row(number, number, values)


def _is_string(pa, t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(pa, t) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
