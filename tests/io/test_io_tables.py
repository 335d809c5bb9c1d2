"""One table reader for `seqenc encode` and training: both read every table the same way,
under the rules in seqenc/io/tables.py (TSV without quoting, blank lines, headers, bad lines)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqenc.io import InputError, open_records
from seqenc.io.tables import open_table
from seqenc.train.data import read_labelled


def encode_side(path, field="text"):
    """(line, text) of every record, as `seqenc encode` reads them."""
    with open_records(path, field=field) as reader:
        return [(r.line, r.text) for r in reader]


def train_side(path, text="text", label="label", **kw):
    data = read_labelled(path, text, label, require_labels=False, **kw)
    return list(zip(data.lines, data.texts, strict=True))


def both(path, **kw):
    """Read ``path`` with both callers; they must agree, and the result is returned."""
    encoded, trained = encode_side(path), train_side(path, **kw)
    assert encoded == trained
    return encoded


def first_error(read, path, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        read(path, **kw)
    return info.value


# -- TSV: no quoting, no escaping --------------------------------------------------------------


def test_tsv_quotes_and_backslashes_are_text(tmp_path):
    path = tmp_path / "t.tsv"
    rows = ['"Hello," she said', 'it\'s "fine"', r"C:\temp\new", r"a \t b", '"""', '"a\tb"']
    path.write_text("text\tlabel\n" + "".join(f"{t}\t1\n" for t in rows[:5])
                    + f"{rows[5]}\n", encoding="utf-8")
    # The sixth line has a tab inside quotes: TSV has no quoting, so it is two cells.
    assert both(path)[:5] == [(n, t) for n, t in enumerate(rows[:5], start=2)]
    assert both(path)[5] == (7, '"a')


def test_tsv_keeps_a_lone_carriage_return_in_its_cell(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"text\tlabel\r\nold\rmac\t1\r\nlast\t0")  # CRLF ends lines, no final EOL
    assert both(path) == [(2, "old\rmac"), (3, "last")]


def test_tsv_label_cells_are_read_as_written(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text('text\tlabel\nfine\t"pos"\nok\tneg\n', encoding="utf-8")
    assert read_labelled(path, "text", "label").labels == ['"pos"', "neg"]


# -- CSV: RFC 4180 ----------------------------------------------------------------------------


def test_csv_doubled_quotes_and_multiline_fields(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"say ""hi""",1\n"two\nlines",0\nplain,1\n', encoding="utf-8")
    assert both(path) == [(2, 'say "hi"'), (3, "two\nlines"), (5, "plain")]


def test_csv_unclosed_quote_names_its_line_in_both(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\nok,1\n"open,0\n', encoding="utf-8")
    for read in (encode_side, train_side):
        e = first_error(read, path)
        assert (e.file, e.line) == (str(path), 3) and "cannot parse CSV" in e.reason


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_header_is_the_first_non_empty_line_and_a_bom_is_dropped(tmp_path, suffix):
    sep = "," if suffix == "csv" else "\t"
    path = tmp_path / f"t.{suffix}"
    path.write_bytes(f"\ufeff\n\ntext{sep}label\nx{sep}1\n".encode())
    assert both(path) == [(4, "x")]


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_missing_column_names_the_header_line_in_both(tmp_path, suffix):
    sep = "," if suffix == "csv" else "\t"
    path = tmp_path / f"t.{suffix}"
    path.write_text(f"\nbody{sep}label\nx{sep}1\n", encoding="utf-8")
    for read in (encode_side, train_side):
        e = first_error(read, path)
        assert (e.line, e.field) == (2, "text")
        assert "no such column; the header has 'body', 'label'" in str(e)


def test_headerless_columns_are_indices(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tx\t9\nb\ty\n", encoding="utf-8")
    data = read_labelled(path, "0", "1", header=False)
    assert (data.texts, data.labels, data.lines) == (["a", "b"], ["x", "y"], [1, 2])
    e = first_error(read_labelled, path, text_column="2", label_column="1", header=False)
    assert (e.line, e.reason) == (2, "row has 2 column(s), no column 2")
    with pytest.raises(InputError, match="csv and tsv only"):
        read_labelled(tmp_path / "t.jsonl", header=False)


def test_only_the_data_rows_are_checked_against_the_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nok,1\ntoo,many,cells\n", encoding="utf-8")
    for read in (encode_side, train_side):
        e = first_error(read, path)
        assert (e.file, e.line, e.reason) == (str(path), 3, "row has 3 columns, the header has 2")


# -- blank lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_empty_lines_carry_no_row_and_are_not_counted(tmp_path, suffix):
    sep = "," if suffix == "csv" else "\t"
    path = tmp_path / f"t.{suffix}"
    path.write_bytes(f"text{sep}label\r\n\r\na{sep}1\n\n\nb{sep}0\n\n".encode())
    assert both(path) == [(3, "a"), (6, "b")]
    with open_records(path) as reader:
        assert [r.id for r in reader] == [1, 2]  # row numbers skip the blank lines


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_a_line_of_spaces_is_a_row(tmp_path, suffix):
    sep = "," if suffix == "csv" else "\t"
    one_column = tmp_path / f"one.{suffix}"
    one_column.write_text("text\na\n   \nb\n", encoding="utf-8")
    with open_records(one_column) as reader:
        assert [(r.id, r.text) for r in reader] == [(1, "a"), (2, "   "), (3, "b")]
    two_columns = tmp_path / f"two.{suffix}"
    two_columns.write_text(f"text{sep}label\na{sep}1\n   \n", encoding="utf-8")
    for read in (encode_side, train_side):
        e = first_error(read, two_columns)
        assert (e.line, e.reason) == (3, "row has 1 columns, the header has 2")


def test_jsonl_whitespace_lines_carry_no_row(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n  \t\n\n{"text": "b", "label": 0}\n',
                    encoding="utf-8")
    assert both(path) == [(1, "a"), (4, "b")]


# -- bad lines, named by file and line --------------------------------------------------------


@pytest.mark.parametrize("name, content, line, field", [
    ("t.tsv", b"text\tlabel\nok\t1\nb\xffd\t0\n", 3, "text"),
    ("t.tsv", b"text\tlabel\nok\t1\nfine\t\xff\n", 3, "label"),
    ("t.csv", b"text,label\nok,1\n\"b\xffd\",0\n", 3, "text"),
    ("t.jsonl", b'{"text": "ok", "label": 1}\n{"text": "\xff", "label": 1}\n', 2, None),
    ("t.jsonl", b'{"text": "ok", "label": 1}\n[1, 2]\n', 2, None),
    ("t.jsonl", b'{"text": "ok", "label": 1}\n{"text": 5, "label": 1}\n', 2, "text"),
])
def test_bad_lines_are_named_the_same_by_both(tmp_path, name, content, line, field):
    path = tmp_path / name
    path.write_bytes(content)
    errors = [first_error(encode_side, path), first_error(train_side, path)]
    for e in errors:
        assert (e.file, e.line, e.field) == (str(path), line, field)
        assert str(e).startswith(f"{path}:{line}: ")
    assert errors[0].reason == errors[1].reason


def test_parquet_binary_columns_are_utf8_for_both(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"text": pa.array([b"caf\xc3\xa9", b"ok"], pa.binary()),
                      "label": pa.array([b"pos", b"neg"], pa.binary())})
    pq.write_table(table, path)
    assert both(path) == [(1, "café"), (2, "ok")]
    assert read_labelled(path, "text", "label").labels == ["pos", "neg"]
    pq.write_table(pa.table({"text": pa.array([b"ok", b"b\xffd"], pa.binary())}), path)
    for read in (encode_side, train_side):
        e = first_error(read, path)
        assert (e.line, e.field, e.unit) == (2, "text", "row") and "invalid UTF-8" in e.reason


def test_open_table_rows_keep_their_numbers_and_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\n\n"a\nb",1\nc,0\n', encoding="utf-8")
    table = open_table(path, "csv", required=["text"])
    try:
        rows = list(table.rows)
    finally:
        table.close()
    assert [(r.number, r.line, r.values["text"]) for r in rows] == [(1, 3, "a\nb"), (2, 5, "c")]
    assert table.header == ["text", "label"]
