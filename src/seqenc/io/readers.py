"""Streaming readers: txt, jsonl, csv, tsv and parquet inputs as ``Record``s, in bounded memory.

Tables (jsonl, csv, tsv, parquet) come from ``seqenc.io.tables``, the one table reader that
training uses too (its docstring states the csv/tsv rules); this module adds txt, ids and the
on-error policy. Every problem is an ``InputError`` that names file, line and field.

Record ids: the 1-based line number for txt and jsonl, the 1-based row number (header not
counted) for csv, tsv and parquet, or the value of ``id_field`` as a string when one is given.
Ids do not depend on which other records were skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from seqenc.choices import INPUT_FORMATS as FORMATS
from seqenc.choices import ON_ERROR

from .errors import InputError
from .lines import decode, open_binary, raw_lines, strip_eol
from .tables import STDIN, Row, Table, open_table, value_type

INPUT_EXTENSIONS = {  # extension -> input format
    ".txt": "txt",
    ".text": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class Record(NamedTuple):
    id: int | str  # line/row number, or the id field's value as a string
    text: str
    line: int  # where the record starts: line number, or row number for parquet


def detect_format(source: str | Path, fmt: str | None = None) -> str:
    """The input format: ``fmt`` if given, else from the extension; stdin defaults to txt."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    if str(source) == STDIN:
        return "txt"
    suffix = Path(source).suffix.lower()
    if suffix not in INPUT_EXTENSIONS:
        known = ", ".join(sorted(INPUT_EXTENSIONS))
        raise InputError(
            f"unknown input extension {suffix or '(none)'!r}; expected one of {known}, "
            "or pass --format",
            file=str(source),
        )
    return INPUT_EXTENSIONS[suffix]


class RecordReader:
    """Iterates the good records of one input, applying the on-error policy to the bad ones.

    With ``on_error="raise"`` the first bad record raises ``InputError``; with ``"skip"`` each
    is reported through ``warn`` and counted in ``skipped``. Problems with the input as a whole
    (missing file, missing column, unparseable CSV) always raise.
    """

    def __init__(
        self,
        items: Iterator[Record | InputError],
        *,
        name: str,
        fmt: str,
        on_error: str = "raise",
        warn: Callable[[str], None] | None = None,
        total: int | None = None,
        close: Callable[[], None] | None = None,
        field: str | None = None,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.name = name
        self.format = fmt
        self.on_error = on_error
        self.total = total  # number of records when the format knows it up front (parquet)
        self.field = field  # the text field, None for txt
        self.unit = "row" if fmt == "parquet" else "line"
        self.skipped = 0
        self._items = items
        self._warn = warn or (lambda msg: print(msg, file=sys.stderr))
        self._close = close

    def __iter__(self) -> Iterator[Record]:
        for item in self._items:
            if isinstance(item, InputError):
                self.reject(item)
            else:
                yield item

    def reject(self, error: InputError) -> None:
        """Handle one bad record found here or downstream (e.g. too long for the model)."""
        if self.on_error == "raise":
            raise error
        self.skipped += 1
        self._warn(f"skipped {error}")

    def bad_record(self, record: Record, reason: str) -> InputError:
        """An InputError that points at ``record``, for problems found after reading it."""
        return InputError(
            reason, file=self.name, line=record.line, field=self.field, unit=self.unit
        )

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_records(
    source: str | Path,
    fmt: str | None = None,
    *,
    field: str = "text",
    id_field: str | None = None,
    on_error: str = "raise",
    warn: Callable[[str], None] | None = None,
    stdin: BinaryIO | None = None,
) -> RecordReader:
    """Open ``source`` (a path, or ``"-"`` for stdin) and check it can be read as ``fmt``.

    Everything that can be checked before the first record (file exists, extension, column
    present) is checked here, so callers can fail fast before loading a model. Tables are
    read by ``seqenc.io.tables``, whose rules training shares.
    """
    fmt = detect_format(source, fmt)
    if fmt == "txt":
        if id_field is not None:
            raise InputError("txt input has no fields; --id-field needs jsonl, csv, tsv or "
                             "parquet")
        return _open_txt(source, on_error, warn, stdin)
    columns = [field] if id_field is None else [field, id_field]
    table = open_table(source, fmt, required=columns, strings=[field], stdin=stdin)
    # jsonl ids are line numbers (as for txt); the other tables' are row numbers.
    by_line = fmt == "jsonl"
    items = (
        row if isinstance(row, InputError)
        else _record(row, field, id_field, row.line if by_line else row.number, table)
        for row in table.rows
    )
    return RecordReader(items, name=table.name, fmt=fmt, on_error=on_error, warn=warn,
                        total=table.total, close=table.close, field=field)


def _record(
    row: Row, field: str, id_field: str | None, default_id: int, table: Table
) -> Record | InputError:
    record_id: int | str = default_id
    if id_field is not None:
        value = row.values[id_field]
        # Ids become strings so that one output column has one type whatever the input held.
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return InputError(f"expected a string or integer id, got {value_type(value)}",
                              file=table.name, line=row.line, field=id_field, unit=table.unit)
        record_id = str(value)
    return Record(record_id, row.values[field], row.line)


def _open_txt(
    source: str | Path,
    on_error: str,
    warn: Callable[[str], None] | None,
    stdin: BinaryIO | None,
) -> RecordReader:
    if str(source) == STDIN:
        name, stream = "<stdin>", stdin if stdin is not None else sys.stdin.buffer
        close = None  # never close the process's stdin
    else:
        name, stream = str(source), open_binary(Path(source))
        close = stream.close
    return RecordReader(_txt(stream, name), name=name, fmt="txt", on_error=on_error,
                        warn=warn, close=close)


def _txt(stream: BinaryIO, name: str) -> Iterator[Record | InputError]:
    # Binary lines split on b"\n" only, so U+2028, form feeds etc. stay inside their text.
    for lineno, offset, raw in raw_lines(stream):
        text = decode(strip_eol(raw), name, lineno, offset)
        yield text if isinstance(text, InputError) else Record(lineno, text, lineno)
