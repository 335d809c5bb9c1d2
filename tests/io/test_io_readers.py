"""Readers: every format yields (id, text) in order, lazily; bad input names file, line, field."""

from __future__ import annotations

import csv
import io
import json
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqenc.io import InputError, Record, detect_format, open_records


def read(path, **kw) -> list[Record]:
    with open_records(path, **kw) as reader:
        return list(reader)


def pairs(records: list[Record]) -> list[tuple]:
    return [(r.id, r.text) for r in records]


# -- formats ---------------------------------------------------------------------------------


def test_txt_every_line_is_a_record_split_on_newline_only(tmp_path):
    path = tmp_path / "in.txt"
    # BOM dropped, CRLF and LF both end lines, blank lines are (empty) records, U+2028 and a
    # form feed stay inside their line, no newline needed at the end.
    path.write_bytes(
        "\ufefffirst\r\nsecond line\n\nwith\u2028sep\x0cff\nlast".encode()
    )
    assert pairs(read(path)) == [
        (1, "first"), (2, "second line"), (3, ""), (4, "with\u2028sep\x0cff"), (5, "last"),
    ]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"],
                                      blacklist_characters="\n\r")), max_size=8))
def test_txt_round_trips_any_text(texts):
    stream = io.BytesIO("".join(t + "\n" for t in texts).encode("utf-8"))
    with open_records("-", stdin=stream) as reader:
        records = list(reader)
    if texts and texts[0].startswith("\ufeff"):
        texts[0] = texts[0][1:]  # a leading BOM is the file's, not the text's
    assert pairs(records) == [(i, t) for i, t in enumerate(texts, start=1)]


def test_jsonl_field_and_ids(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [{"body": "a", "key": 10}, {"body": "b\nc", "key": "x"}, {"body": "é", "key": 3}]
    path.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]))
    assert pairs(read(path, field="body")) == [(1, "a"), (2, "b\nc"), (4, "é")]
    # ids from a field become strings, so one output column has one type
    assert pairs(read(path, field="body", id_field="key")) == [("10", "a"), ("x", "b\nc"),
                                                               ("3", "é")]


def test_csv_quoted_fields_and_row_ids(tmp_path):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # with a BOM, as Excel writes
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([["a", 'say "hi", then\nleave'], ["b", "plain"]])
        f.write("\r\n")  # a blank line is no row
        w.writerow(["c", ""])
    records = read(path)
    assert pairs(records) == [(1, 'say "hi", then\nleave'), (2, "plain"), (3, "")]
    assert [r.line for r in records] == [2, 4, 6]  # the multi-line row takes lines 2-3
    assert [r.id for r in read(path, id_field="id")] == ["a", "b", "c"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"])), max_size=6))
def test_csv_round_trips_any_text(texts):
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow(["n", "text"])
    w.writerows(enumerate(texts, start=1))
    stream = io.BytesIO(buffer.getvalue().encode("utf-8"))
    with open_records("-", "csv", id_field="n", stdin=stream) as reader:
        records = list(reader)
    assert pairs(records) == [(str(i), t) for i, t in enumerate(texts, start=1)]


def test_tsv_has_no_quoting(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text('n\ttext\n1\t"Hello," she said\n2\tit\'s "fine"\n', encoding="utf-8")
    assert pairs(read(path, id_field="n")) == [("1", '"Hello," she said'),
                                               ("2", 'it\'s "fine"')]


def test_parquet_row_groups_and_ids(tmp_path):
    path = tmp_path / "in.parquet"
    table = pa.table({"doc": [f"text {i}" for i in range(2500)], "n": list(range(100, 2600))})
    pq.write_table(table, path, row_group_size=700)
    with open_records(path, field="doc", id_field="n") as reader:
        assert reader.total == 2500
        records = list(reader)
    assert len(records) == 2500
    assert records[0] == Record("100", "text 0", 1)
    assert records[-1] == Record("2599", "text 2499", 2500)
    assert [r.id for r in read(path, field="doc")][:3] == [1, 2, 3]


def test_parquet_binary_column_is_decoded(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", b"ok"], pa.binary())}), path)
    assert pairs(read(path)) == [(1, "café"), (2, "ok")]


def test_format_from_extension_or_override():
    assert detect_format("a.TXT") == "txt"
    assert detect_format("a.ndjson") == "jsonl"
    assert detect_format("a.tab") == "tsv"
    assert detect_format("-") == "txt"
    assert detect_format("-", "jsonl") == "jsonl"
    assert detect_format("data.log", "txt") == "txt"


class EndlessLines:
    """A stream that never ends: reading it all would hang, so only a lazy reader passes."""

    def __init__(self, line: bytes):
        self.line = line

    def __iter__(self):
        while True:
            yield self.line


@pytest.mark.parametrize(
    "fmt, line",
    [("txt", b"hello\n"), ("jsonl", b'{"text": "hello"}\n'), ("csv", b"text\n")],
)
def test_readers_are_lazy(fmt, line):
    with open_records("-", fmt, stdin=EndlessLines(line)) as reader:
        first = list(islice(reader, 3))
    assert [r.text for r in first] == (["hello"] * 3 if fmt != "csv" else ["text"] * 3)


# -- bad input -------------------------------------------------------------------------------

BAD_CASES = {
    # name: (file name, content, reader kwargs, line, field, words the message must contain)
    "txt invalid utf-8": ("a.txt", b"ok\nab\xffc\n", {}, 2, None, ["UTF-8", "0xff", "offset 5"]),
    "jsonl not json": ("a.jsonl", b'{"text": "a"}\n{"text": \n', {}, 2, None, ["not valid JSON"]),
    "jsonl not an object": ("a.jsonl", b'["text"]\n', {}, 1, None, ["JSON object", "array"]),
    "jsonl missing field": ("a.jsonl", b'{"text": "a"}\n{"body": "b"}\n', {}, 2, "text",
                            ["missing"]),
    "jsonl field not a string": ("a.jsonl", b'{"text": 5}\n', {}, 1, "text", ["string", "number"]),
    "jsonl null field": ("a.jsonl", b'{"text": null}\n', {}, 1, "text", ["null"]),
    "jsonl missing id": ("a.jsonl", b'{"text": "a"}\n', {"id_field": "id"}, 1, "id", ["missing"]),
    "jsonl lone surrogate": ("a.jsonl", b'{"text": "a"}\n{"text": "a\\ud800b"}\n', {}, 2, "text",
                             ["lone surrogate", "U+D800", "character 1"]),
    "txt raw surrogate bytes": ("a.txt", b"ok\na\xed\xa0\x80b\n", {}, 2, None,
                                ["UTF-8", "0xed"]),
    "jsonl invalid utf-8": ("a.jsonl", b'{"text": "\xe9"}\n', {}, 1, None, ["UTF-8", "offset 10"]),
    "csv missing column": ("a.csv", b"id,body\n1,x\n", {}, 1, "text", ["no such column", "'body'"]),
    "csv short row": ("a.csv", b"id,text\n1,x\n2\n", {}, 3, None, ["1 columns", "header has 2"]),
    "csv invalid utf-8": ("a.csv", b"id,text\n1,ok\n2,b\xe9d\n", {}, 3, "text", ["UTF-8"]),
    "csv empty": ("a.csv", b"", {}, 1, None, ["header"]),
    "csv unparseable": ("a.csv", b'text\n"open quote\n', {}, 2, None, ["cannot parse"]),
    "tsv missing id column": ("a.tsv", b"text\nx\n", {"id_field": "n"}, 1, "n", ["no such column"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_input_names_file_line_and_field(tmp_path, case):
    name, content, kwargs, line, field, words = BAD_CASES[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read(path, **kwargs)
    e = info.value
    assert (e.file, e.line, e.field) == (str(path), line, field)
    message = str(e)
    assert f"{path}:{line}" in message
    if field is not None:
        assert repr(field) in message
    for word in words:
        assert word in message


def test_parquet_null_and_non_string_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "n": [1, 2, 3]}), path)
    with pytest.raises(InputError) as info:
        read(path)
    assert (info.value.line, info.value.field, info.value.unit) == (2, "text", "row")
    assert str(info.value) == f"{path}: row 2: field 'text': expected a string, got null"
    with pytest.raises(InputError, match="expected a string column, got int64") as info:
        read(path, field="n")
    assert info.value.field == "n"
    with pytest.raises(InputError, match="no such column; the file has 'text', 'n'"):
        read(path, field="body")


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("missing.txt", None, ["cannot read input", "No such file"]),
        ("missing.parquet", None, ["cannot read input"]),
        ("adir.txt", "dir", ["is a directory"]),
        ("notes.docx", "file", ["unknown input extension '.docx'", "--format"]),
        ("broken.parquet", "file", ["not a readable parquet file"]),
    ],
)
def test_unreadable_inputs(tmp_path, name, make, words):
    path = tmp_path / name
    if make == "dir":
        path.mkdir()
    elif make == "file":
        path.write_bytes(b"not really")
    with pytest.raises(InputError) as info:
        read(path)
    assert info.value.file == str(path)
    for word in words:
        assert word in str(info.value)


def test_txt_has_no_id_field():
    with pytest.raises(InputError, match="--id-field"):
        open_records("-", id_field="id", stdin=io.BytesIO(b"x\n"))


def test_parquet_not_from_stdin():
    with pytest.raises(InputError, match="stdin"):
        open_records("-", "parquet", stdin=io.BytesIO(b""))


# -- on_error="skip" -------------------------------------------------------------------------


def test_skip_logs_each_bad_record_and_keeps_ids(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": 1}\nnope\n{"text": "d"}\n\xff\n{"text": "f"}\n')
    warnings: list[str] = []
    with open_records(path, on_error="skip", warn=warnings.append) as reader:
        records = list(reader)
        assert reader.skipped == 3
    assert pairs(records) == [(1, "a"), (4, "d"), (6, "f")]
    assert [w.split(": ")[0] for w in warnings] == [f"skipped {path}:{n}" for n in (2, 3, 5)]


def test_skip_does_not_hide_whole_file_problems(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("body\nx\n")
    with pytest.raises(InputError, match="no such column"):
        open_records(path, on_error="skip")


def test_reject_downstream_record(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("text\nshort\nvery long text\n")
    with open_records(path) as reader:
        records = list(reader)
        error = reader.bad_record(records[1], "too long")
    assert str(error) == f"{path}:3: field 'text': too long"
    with pytest.raises(InputError):
        reader.reject(error)
