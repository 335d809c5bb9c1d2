"""Reading labelled data: formats, headerless TSV, and clear errors naming file/line/column."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqenc.io.errors import InputError
from seqenc.train.data import (
    PLAN_VERSION,
    encode_labels,
    infer_labels,
    plan_change,
    plan_epoch,
    read_corpus,
    read_labelled,
    split_indices,
)


def test_tsv_with_header(data_dir):
    data = read_labelled(data_dir / "train.tsv")
    assert len(data) == 128
    assert data.lines[0] == 2  # line 1 is the header
    assert infer_labels(data) == ["0", "1"]


def test_headerless_tsv_uses_columns_0_and_1(tmp_path):
    path = tmp_path / "news.tsv"
    path.write_text("Stocks fall\tBusiness\nTeam wins\tSports\nNew chip\tSci/Tech\n")
    data = read_labelled(path, header=False)
    assert data.texts == ["Stocks fall", "Team wins", "New chip"]
    assert infer_labels(data) == ["Business", "Sci/Tech", "Sports"]
    with pytest.raises(InputError, match="0-based indices"):
        read_labelled(path, "text", header=False)


def test_csv_jsonl_parquet_read_the_same(tmp_path):
    rows = [("a, quoted \"text\"", "pos"), ("line\nbreak", "neg"), ("plain", "pos")]
    csv_path = tmp_path / "d.csv"
    import csv

    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "y"])
        writer.writerows(rows)
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": t, "y": y}) + "\n" for t, y in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in rows], "y": [y for _, y in rows]}), pq_path)
    for path in (csv_path, jsonl_path, pq_path):
        data = read_labelled(path, "text", "y")
        assert data.texts == [t for t, _ in rows], path
        assert data.labels == [y for _, y in rows], path
    assert read_labelled(csv_path, "text", "y").lines == [2, 3, 5]  # row 2 spans lines 3-4


def test_integer_labels_sort_numerically(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"sentence": "x", "label": y}) + "\n"
                            for y in (10, 2, 1)))
    assert infer_labels(read_labelled(path)) == ["1", "2", "10"]


@pytest.mark.parametrize("content, message, line", [
    ("", "empty file", 1),
    ("sentence\tlabel\n", "no examples", None),
    ("text\tlabel\nhello\t1\n", "no such column", 1),
    ("sentence\tlabel\nhello\t1\nworld\n", "row has 1 columns, the header has 2", 3),
    ("sentence\tlabel\nhello\t1\nworld\t\n", "empty label", 3),
])
def test_bad_tsv_names_file_line_and_column(tmp_path, content, message, line):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        read_labelled(path)
    assert err.value.file == str(path)
    assert err.value.line == line
    if "column" in message and "columns" not in message:
        assert err.value.field == "sentence"
        assert "'text', 'label'" in str(err.value)


def test_bad_jsonl_and_utf8(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sentence": "ok", "label": 1}\n{"sentence": "no label"}\n')
    with pytest.raises(InputError) as err:
        read_labelled(path)
    assert (err.value.line, err.value.field, err.value.reason) == (2, "label", "missing")
    path.write_text('{"sentence": "ok", "label": null}\n')
    with pytest.raises(InputError, match="got null"):
        read_labelled(path)
    raw = tmp_path / "bad.tsv"
    raw.write_bytes(b"sentence\tlabel\nfine\t1\nbro\xffken\t0\n")
    with pytest.raises(InputError, match="invalid UTF-8") as err:
        read_labelled(raw)
    assert err.value.line == 3


# Issue 17: text that is not Unicode (a JSON-escaped lone surrogate, or the raw bytes ED A0 80,
# which encode a surrogate and are not UTF-8) must stop training readers with file, line and
# field named, not reach the tokenizer. (name, bytes, reader, line, field, words in the reason)
NOT_UNICODE = {
    "jsonl escaped surrogate in text": (
        "a.jsonl", b'{"sentence": "ok", "label": 1}\n{"sentence": "a\\ud800b", "label": 0}\n',
        "labelled", 2, "sentence", ["lone surrogate", "U+D800"]),
    "jsonl escaped surrogate in label": (
        "a.jsonl", b'{"sentence": "ok", "label": "\\udfff"}\n', "labelled", 1, "label",
        ["lone surrogate", "U+DFFF"]),
    "jsonl surrogate bytes": (
        "a.jsonl", b'{"sentence": "ok", "label": 1}\n{"sentence": "a\xed\xa0\x80b", "label": 0}\n',
        "labelled", 2, None, ["invalid UTF-8", "0xed"]),
    "tsv surrogate bytes": ("a.tsv", b"sentence\tlabel\nok\t1\na\xed\xa0\x80b\t0\n",
                            "labelled", 3, "sentence", ["invalid UTF-8", "0xed"]),
    "csv surrogate bytes": ("a.csv", b"sentence,label\nok,1\na\xed\xa0\x80b,0\n",
                            "labelled", 3, "sentence", ["invalid UTF-8", "0xed"]),
    "txt corpus surrogate bytes": ("a.txt", b"ok\na\xed\xa0\x80b\n", "corpus", 2, None,
                                   ["invalid UTF-8", "0xed"]),
    "txt unlabelled surrogate bytes": ("a.txt", b"ok\na\xed\xa0\x80b\n", "unlabelled", 2,
                                       None, ["invalid UTF-8", "0xed"]),
    "pairs escaped surrogate in the second text": (
        "a.jsonl", b'{"q": "ok", "d": "a\\udbffz", "score": 1}\n', "pairs", 1, "d",
        ["lone surrogate", "U+DBFF"]),
}


@pytest.mark.parametrize("case", list(NOT_UNICODE), ids=list(NOT_UNICODE))
def test_text_that_is_not_unicode_names_file_line_and_field(tmp_path, case):
    from seqenc.train.pairs import read_pairs

    name, data, reader, line, field, words = NOT_UNICODE[case]
    path = tmp_path / name
    path.write_bytes(data)
    read = {"labelled": read_labelled, "corpus": read_corpus,
            "unlabelled": lambda p: read_labelled(p, require_labels=False),
            "pairs": lambda p: read_pairs(str(p), "q", "d", "score")}[reader]
    with pytest.raises(InputError) as err:
        read(path)
    e = err.value
    assert (e.file, e.line, e.field) == (str(path), line, field)
    for word in words:
        assert word in e.reason


def test_one_label_only_is_an_error(tmp_path):
    path = tmp_path / "one.tsv"
    path.write_text("sentence\tlabel\na\tpos\nb\tpos\n")
    with pytest.raises(InputError, match="only one label \\('pos'\\)") as err:
        infer_labels(read_labelled(path))
    assert err.value.file == str(path)


def test_unknown_dev_label_names_its_line(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t7\n")
    data = read_labelled(path)
    with pytest.raises(InputError, match="label '7' is not one of") as err:
        encode_labels(data, ["0", "1"])
    assert err.value.line == 3
    np.testing.assert_array_equal(encode_labels(data.subset([0]), ["0", "1"]), [0])


def test_txt_needs_labels_except_for_prediction(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("one\ntwo\n")
    with pytest.raises(InputError, match="no label column"):
        read_labelled(path)
    assert read_labelled(path, require_labels=False).texts == ["one", "two"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        read_corpus(empty)


def test_split_is_seeded_and_disjoint():
    a_train, a_dev = split_indices(100, 0.1, seed=0)
    b_train, b_dev = split_indices(100, 0.1, seed=0)
    np.testing.assert_array_equal(a_dev, b_dev)
    assert len(a_dev) == 10 and not set(a_train) & set(a_dev)
    assert sorted([*a_train, *a_dev]) == list(range(100))
    assert not np.array_equal(split_indices(100, 0.1, seed=1)[1], a_dev)


def test_epoch_plan_covers_every_example_once_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    plan = plan_epoch(lengths, batch_size=16, seed=0, epoch=0)
    seen = np.concatenate(plan.batches)
    assert sorted(seen.tolist()) == list(range(1000))
    assert len(plan) == 63  # ceil(1000 / 16)
    spread = np.mean([np.ptp(lengths[b]) for b in plan.batches])
    random_spread = np.mean([np.ptp(lengths[b]) for b in
                             plan_epoch(lengths, 16, 0, 0, group_by_length=False).batches])
    assert spread < random_spread / 4  # grouped batches hold texts of similar length
    again = plan_epoch(lengths, batch_size=16, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(plan.batches, again.batches, strict=True))
    other = plan_epoch(lengths, batch_size=16, seed=0, epoch=1)
    assert not np.array_equal(plan.batches[0], other.batches[0])
    # A batch smaller than the number of processes is dropped (1000 = 62 * 16 + 8).
    assert len(plan_epoch(lengths, 16, 0, 0, min_batch=9)) == 62


@pytest.mark.parametrize("group_by_length", [True, False])
def test_epoch_plan_never_puts_a_group_in_one_batch(group_by_length):
    """A pair and its reversal have the same length, so sorting by length puts them side by
    side: with ``groups`` they never share a batch, and the plan is still every example once,
    length-grouped and the same for the same seed."""
    rng = np.random.default_rng(0)
    half = rng.integers(3, 60, size=500)
    lengths = np.concatenate([half, half])  # example i + 500 is example i reversed
    groups = np.tile(np.arange(500), 2)
    singles = np.arange(1000)  # ungrouped, as before

    def shared(plan):
        return sum(len(b) - len(set(groups[b].tolist())) for b in plan.batches)

    if group_by_length:  # what the groups prevent
        assert shared(plan_epoch(lengths, 16, 0, 0)) > 100
    for seed, epoch in ((0, 0), (0, 1), (1, 0), (7, 3)):
        plan = plan_epoch(lengths, 16, seed, epoch, groups=groups,
                          group_by_length=group_by_length)
        assert shared(plan) == 0
        assert sorted(np.concatenate(plan.batches).tolist()) == list(range(1000))
        again = plan_epoch(lengths, 16, seed, epoch, groups=groups,
                           group_by_length=group_by_length)
        assert all(np.array_equal(a, b) for a, b in zip(plan.batches, again.batches,
                                                        strict=True))
    other = plan_epoch(lengths, 16, 1, 0, groups=groups, group_by_length=group_by_length)
    assert not np.array_equal(plan.batches[0], other.batches[0])
    if group_by_length:
        spread = np.mean([np.ptp(lengths[b]) for b in plan.batches])
        random_spread = np.mean([np.ptp(lengths[b]) for b in plan_epoch(
            lengths, 16, 0, 0, group_by_length=False).batches])
        assert spread < random_spread / 4
    # groups of one each are the plan without groups
    assert all(np.array_equal(a, b) for a, b in zip(
        plan_epoch(lengths, 16, 3, 1, groups=singles, group_by_length=group_by_length).batches,
        plan_epoch(lengths, 16, 3, 1, group_by_length=group_by_length).batches, strict=True))


@pytest.mark.parametrize("group_by_length", [True, False])
def test_epoch_plan_never_puts_a_group_in_one_accumulated_step(group_by_length):
    """With gradient accumulation the ``accum`` micro-batches of a step count as one batch: no
    step holds two members of a group; accum 1 is the plan of single batches."""
    rng = np.random.default_rng(0)
    half = rng.integers(3, 60, size=500)
    lengths = np.concatenate([half, half])  # example i + 500 is example i reversed
    groups = np.tile(np.arange(500), 2)
    for seed, epoch in ((0, 0), (7, 3)):
        plan = plan_epoch(lengths, 16, seed, epoch, groups=groups, accum=4,
                          group_by_length=group_by_length)
        assert sorted(np.concatenate(plan.batches).tolist()) == list(range(1000))
        assert {len(step) for step in plan.steps} <= {1, 2, 3, 4}
        assert sum(len(step) < 4 for step in plan.steps) <= 2  # each stratum's last
        for step in plan.steps:
            members = groups[np.concatenate(step)]
            assert len(set(members.tolist())) == len(members)
    single = plan_epoch(lengths, 16, 7, 3, groups=groups, group_by_length=group_by_length)
    assert all(len(step) == 1 for step in single.steps)
    ungrouped = plan_epoch(lengths, 16, 7, 3, accum=4, group_by_length=group_by_length)
    flat = plan_epoch(lengths, 16, 7, 3, group_by_length=group_by_length).batches
    assert [len(s) for s in ungrouped.steps] == [4] * 15 + [3]  # 63 batches
    assert all(np.array_equal(a, b) for a, b in zip(ungrouped.batches, flat, strict=True))


def _plan_version_1(lengths, batch_size, seed, epoch, *, group_by_length, groups, accum,
                    min_batch=1, pool_batches=50) -> list[list[np.ndarray]]:
    """The steps version 1 of the plan took (plan_epoch, then the trainer's cut into steps of
    ``accum``, before 7c8c5dd): what checkpoints without a plan number were
    trained on."""
    from seqenc.train.data import _batches, _rank_in_group

    rng = np.random.default_rng([seed, epoch])
    if groups is not None and len(np.unique(groups)) == len(groups):
        groups = None
    if groups is None:
        batches = _batches(rng.permutation(len(lengths)), lengths, batch_size, group_by_length,
                           pool_batches)
    else:
        rank = _rank_in_group(np.asarray(groups), rng)
        batches = []
        for stratum in range(int(rank.max(initial=-1)) + 1):
            members = np.flatnonzero(rank == stratum)
            batches += _batches(members[rng.permutation(len(members))], lengths, batch_size,
                                group_by_length, pool_batches)
    if group_by_length or groups is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    batches = [b for b in batches if len(b) >= min_batch]
    return [batches[i: i + accum] for i in range(0, len(batches), accum)]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_plan_change_names_exactly_the_runs_whose_plan_changed(group_by_length):
    """Trainer refuses to resume a checkpoint of plan version 1 where plan_change says the
    plan changed: it says so where the steps differ, and only there."""
    rng = np.random.default_rng(0)
    half = rng.integers(3, 60, size=300)
    lengths = np.concatenate([half, half])
    pairs = np.tile(np.arange(300), 2)  # example i + 300 is example i reversed
    for groups in (None, np.arange(600), pairs):
        for accum in (1, 2, 4):
            now = plan_epoch(lengths, 16, 3, 1, groups=groups, accum=accum,
                             group_by_length=group_by_length).steps
            then = _plan_version_1(lengths, 16, 3, 1, groups=groups, accum=accum,
                                   group_by_length=group_by_length)
            same = len(now) == len(then) and all(
                np.array_equal(np.concatenate(a), np.concatenate(b))
                for a, b in zip(now, then, strict=True))
            assert (plan_change(1, groups, accum) is None) == same, (groups, accum)
            assert plan_change(PLAN_VERSION, groups, accum) is None
