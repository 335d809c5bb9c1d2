"""Streaming readers: txt, jsonl, csv, tsv and parquet inputs as ``Record``s, in bounded memory.

Every format is parsed by its well-kept library (json, csv, pyarrow); this module only walks
the input lazily and turns each problem into an ``InputError`` that names file, line and field.

Record ids: the 1-based line number for txt and jsonl, the 1-based row number (header not
counted) for csv, tsv and parquet, or the value of ``id_field`` as a string when one is given.
Ids do not depend on which other records were skipped.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from seqenc.choices import INPUT_FORMATS as FORMATS
from seqenc.choices import ON_ERROR
from seqenc.extras import require

from .errors import InputError

_EXTENSIONS = {
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
STDIN = "-"
_BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH = 1024  # rows decoded at a time: bounds memory whatever the row-group size


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
    if suffix not in _EXTENSIONS:
        known = ", ".join(sorted(_EXTENSIONS))
        raise InputError(
            f"unknown input extension {suffix or '(none)'!r}; expected one of {known}, "
            "or pass --format",
            file=str(source),
        )
    return _EXTENSIONS[suffix]


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
    present) is checked here, so callers can fail fast before loading a model.
    """
    fmt = detect_format(source, fmt)
    is_stdin = str(source) == STDIN
    name = "<stdin>" if is_stdin else str(source)
    if fmt == "txt" and id_field is not None:
        raise InputError("txt input has no fields; --id-field needs jsonl, csv, tsv or parquet")
    if fmt == "parquet":
        if is_stdin:
            raise InputError("parquet cannot be read from stdin; pass a file", file=name)
        items, total, close = _parquet(Path(source), name, field, id_field)
        return RecordReader(
            items,
            name=name,
            fmt=fmt,
            on_error=on_error,
            warn=warn,
            total=total,
            close=close,
            field=field,
        )
    if is_stdin:
        stream = stdin if stdin is not None else sys.stdin.buffer
        close = None  # never close the process's stdin
    else:
        stream = open_binary(Path(source))
        close = stream.close
    try:
        if fmt == "txt":
            items = _txt(stream, name)
        elif fmt == "jsonl":
            items = _jsonl(stream, name, field, id_field)
        else:
            items = _csv(stream, name, field, id_field, delimiter="," if fmt == "csv" else "\t")
    except BaseException:
        if close is not None:
            close()
        raise
    return RecordReader(
        items,
        name=name,
        fmt=fmt,
        on_error=on_error,
        warn=warn,
        close=close,
        field=None if fmt == "txt" else field,
    )


def open_binary(path: Path, name: str | None = None) -> BinaryIO:
    """``open(path, "rb")``, or an InputError naming the file."""
    try:
        if path.is_dir():
            raise IsADirectoryError("is a directory")
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read input: {e.strerror or e}", file=name or str(path)) from None


# -- line-based formats ----------------------------------------------------------------------


def _lines(stream: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line with its terminator); a leading BOM is dropped."""
    offset = 0
    for lineno, raw in enumerate(stream, start=1):
        start = offset
        offset += len(raw)
        if lineno == 1 and raw.startswith(_BOM):
            raw, start = raw[len(_BOM) :], start + len(_BOM)
        yield lineno, start, raw


def _strip_eol(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw


def _decode(raw: bytes, name: str, lineno: int, offset: int) -> str | InputError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return InputError(
            f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset {offset + e.start})",
            file=name,
            line=lineno,
        )


def decoded_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line terminator); bad UTF-8 raises InputError."""
    for lineno, offset, raw in _lines(stream):
        text = _decode(_strip_eol(raw), name, lineno, offset)
        if isinstance(text, InputError):
            raise text
        yield lineno, text


def _txt(stream: BinaryIO, name: str) -> Iterator[Record | InputError]:
    # Binary lines split on b"\n" only, so U+2028, form feeds etc. stay inside their text.
    for lineno, offset, raw in _lines(stream):
        text = _decode(_strip_eol(raw), name, lineno, offset)
        yield text if isinstance(text, InputError) else Record(lineno, text, lineno)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _jsonl(
    stream: BinaryIO, name: str, field: str, id_field: str | None
) -> Iterator[Record | InputError]:
    for lineno, offset, raw in _lines(stream):
        line = _decode(_strip_eol(raw), name, lineno, offset)
        if isinstance(line, InputError):
            yield line
            continue
        if not line.strip():
            continue  # blank lines (often a trailing one) carry no record
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield InputError(
                f"not valid JSON ({e.msg} at column {e.colno})", file=name, line=lineno
            )
            continue
        if not isinstance(obj, dict):
            yield InputError(
                f"expected a JSON object, got {_json_type(obj)}", file=name, line=lineno
            )
            continue
        yield _make_record(obj, field, id_field, lineno, lineno, name, "line", _json_type)


def _make_record(
    row: dict,
    field: str,
    id_field: str | None,
    default_id: int,
    line: int,
    name: str,
    unit: str,
    type_name: Callable[[object], str],
) -> Record | InputError:
    def bad(reason: str, which: str) -> InputError:
        return InputError(reason, file=name, line=line, field=which, unit=unit)

    if field not in row:
        return bad("missing", field)
    text = row[field]
    if not isinstance(text, str):
        return bad(f"expected a string, got {type_name(text)}", field)
    if not text.isascii():  # JSON's "\ud800" decodes to a lone surrogate: not text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            return bad(f"not valid Unicode: a lone surrogate U+{ord(text[e.start]):04X} at "
                       f"character {e.start}", field)
    record_id: int | str = default_id
    if id_field is not None:
        if id_field not in row:
            return bad("missing", id_field)
        value = row[id_field]
        # Ids become strings so that one output column has one type whatever the input held.
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return bad(f"expected a string or integer id, got {type_name(value)}", id_field)
        record_id = str(value)
    return Record(record_id, text, line)


def _csv(
    stream: BinaryIO, name: str, field: str, id_field: str | None, delimiter: str
) -> Iterator[Record | InputError]:
    """CSV (quoted fields, RFC 4180) or TSV (tab-separated, no quoting) with a header row."""
    # Lines are decoded leniently for the csv module and strictly on the side, so that one
    # bad byte rejects only the row it is in, at its exact offset.
    bad_bytes: dict[int, InputError] = {}

    def text_lines() -> Iterator[str]:
        for lineno, offset, raw in _lines(stream):
            strict = _decode(raw, name, lineno, offset)
            if isinstance(strict, InputError):
                bad_bytes[lineno] = strict
                yield raw.decode("utf-8", "surrogateescape")
            else:
                yield strict

    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(text_lines(), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty file: expected a header row", file=name, line=1) from None
    except csv.Error as e:
        raise InputError(f"cannot parse header: {e}", file=name, line=reader.line_num) from None
    if 1 in bad_bytes:
        raise bad_bytes[1]
    columns = {col: i for i, col in enumerate(header)}
    for wanted in (field, id_field):
        if wanted is not None and wanted not in columns:
            raise InputError(
                f"no such column; the header has {', '.join(map(repr, header))}",
                file=name,
                line=1,
                field=wanted,
            )
    return _csv_rows(reader, header, name, field, id_field, bad_bytes)


def _csv_rows(
    reader: Iterable[list[str]],
    header: list[str],
    name: str,
    field: str,
    id_field: str | None,
    bad_bytes: dict[int, InputError],
) -> Iterator[Record | InputError]:
    row_number = 0
    last_line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # The parser's state is unknown after this, so no row after it can be trusted.
            raise InputError(f"cannot parse CSV: {e}", file=name, line=reader.line_num) from None
        first_line, last_line = last_line + 1, reader.line_num
        if not cells:
            continue  # blank line
        row_number += 1
        broken = [bad_bytes.pop(n) for n in range(first_line, last_line + 1) if n in bad_bytes]
        if broken:
            # The lenient decode left the bad bytes as lone surrogates: they tell the column
            # (a short row has fewer cells than the header, hence strict=False).
            column = next(
                (h for h, c in zip(header, cells, strict=False) if _has_bad_bytes(c)), None
            )
            yield InputError(broken[0].reason, file=name, line=broken[0].line, field=column)
            continue
        if len(cells) != len(header):
            yield InputError(
                f"row has {len(cells)} columns, the header has {len(header)}",
                file=name,
                line=first_line,
            )
            continue
        row = dict(zip(header, cells, strict=True))
        yield _make_record(row, field, id_field, row_number, first_line, name, "line", _json_type)


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


# -- parquet ---------------------------------------------------------------------------------


def _parquet(
    path: Path, name: str, field: str, id_field: str | None
) -> tuple[Iterator[Record | InputError], int, Callable[[], None]]:
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
    for wanted in (field, id_field):
        if wanted is not None and wanted not in schema.names:
            pf.close()
            raise InputError(
                f"no such column; the file has {', '.join(map(repr, schema.names))}",
                file=name,
                field=wanted,
            )
    text_type = schema.field(field).type
    if not (_is_string(pa, text_type) or _is_binary(pa, text_type)):
        pf.close()
        raise InputError(f"expected a string column, got {text_type}", file=name, field=field)

    def items() -> Iterator[Record | InputError]:
        columns = [field] if id_field is None or id_field == field else [field, id_field]
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
                texts = batch.column(field).to_pylist()
                ids = batch.column(id_field).to_pylist() if id_field else [None] * len(texts)
                for text, value in zip(texts, ids, strict=True):
                    row += 1
                    yield _parquet_record(text, value, row, name, field, id_field)
        except (OSError, pa.ArrowException) as e:
            raise InputError(
                f"cannot read parquet: {e}", file=name, line=row + 1, unit="row"
            ) from None

    return items(), pf.metadata.num_rows, pf.close


def _is_string(pa, t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(pa, t) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def _parquet_record(
    text: object, value: object, row: int, name: str, field: str, id_field: str | None
) -> Record | InputError:
    if isinstance(text, bytes):  # binary column: text must still be UTF-8
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            return InputError(
                f"invalid UTF-8 (byte 0x{text[e.start]:02x} at offset {e.start} in the value)",
                file=name,
                line=row,
                field=field,
                unit="row",
            )
    row_dict = {field: text}
    if id_field is not None:
        row_dict[id_field] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return _make_record(row_dict, field, id_field, row, row, name, "row", _arrow_type)


def _arrow_type(value: object) -> str:
    return "null" if value is None else type(value).__name__
