"""The inputs of a Ray job: which files, and how each is cut into chunks of records.

Paths, directories and globs expand on the driver into a sorted list of files; every file is
opened once there with the single-machine reader (seqenc.io.readers.open_records), so a
missing file, an unknown extension or a missing column fails before any worker starts. The
read stage then runs ``read_chunks`` in Ray tasks: the same reader, the same ids, the same
bad-record messages, cut into chunks of ``chunk_size`` good records.
"""

from __future__ import annotations

import glob
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from seqenc.io import INPUT_EXTENSIONS, detect_format, open_records
from seqenc.io.errors import InputError
from seqenc.io.readers import STDIN

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputFile:
    index: int  # position in the job's sorted input list; orders the output shards
    name: str  # as the user wrote it (or as found under their directory): messages, `source`
    path: str  # absolute, for workers whose working directory is not the driver's
    format: str
    total: int | None  # records, when the format knows up front (parquet)


@dataclass(frozen=True)
class ReadOptions:
    field: str = "text"
    id_field: str | None = None
    on_error: str = "raise"
    chunk_size: int = 4096


def _hidden(path: Path) -> bool:
    # The prefixes that Spark, Arrow and Ray Data skip as metadata (_SUCCESS, .crc, ...).
    return path.name.startswith((".", "_"))


def _in_directory(directory: Path, fmt: str | None) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not _hidden(Path(d)))
        for name in sorted(files):
            path = Path(root, name)
            if _hidden(path):
                continue
            if fmt is not None or path.suffix.lower() in INPUT_EXTENSIONS:
                found.append(path)
    return found


def expand_inputs(patterns: Sequence[str], fmt: str | None = None) -> list[tuple[str, str]]:
    """Files named by ``patterns`` (paths, directories, globs) as (name, absolute path).

    A directory contributes its files with a known input extension (any file with
    ``fmt``), recursively and sorted; a glob its sorted matches. Hidden files (``.``/``_``)
    inside directories are skipped. A file named twice is read once.
    """
    if not patterns:
        raise InputError("no inputs given")
    names: list[str] = []
    for pattern in patterns:
        if pattern == STDIN:
            raise InputError("the ray engine reads files, not stdin; pass files or directories")
        path = Path(pattern)
        if _GLOB_CHARS & set(pattern) and not path.exists():
            matches = sorted(glob.glob(pattern, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                raise InputError("no files match this pattern", file=pattern)
            names.extend(files)
        elif path.is_dir():
            files = _in_directory(path, fmt)
            if not files:
                raise InputError("directory holds no input files", file=pattern)
            names.extend(map(str, files))
        else:
            names.append(pattern)  # a missing file is reported by open_records, with its name
    seen: set[str] = set()
    unique = []
    for name in names:
        absolute = os.path.abspath(name)
        if absolute not in seen:
            seen.add(absolute)
            unique.append((name, absolute))
    return unique


def plan_inputs(
    patterns: Sequence[str], fmt: str | None, opts: ReadOptions
) -> list[InputFile]:
    """Expand ``patterns`` and check each file opens (columns present, format known)."""
    inputs = []
    for index, (name, path) in enumerate(expand_inputs(patterns, fmt)):
        file_format = detect_format(name, fmt)
        try:
            reader = open_records(
                path, file_format, field=opts.field, id_field=opts.id_field, on_error="raise"
            )
        except InputError as e:
            raise renamed(e, path, name) from None
        with reader:
            inputs.append(InputFile(index, name, path, file_format, reader.total))
    return inputs


def renamed(error: InputError, path: str, name: str) -> InputError:
    """``error`` with the file called by the name the user gave, not the absolute path."""
    if error.file != path:
        return error
    return InputError(
        error.reason, file=name, line=error.line, field=error.field, unit=error.unit
    )


def read_chunks(source: InputFile, opts: ReadOptions) -> Iterator[tuple[int, bytes]]:
    """(chunk number, pickled (records, skip messages)) for each chunk of ``source``.

    Each chunk holds up to ``chunk_size`` good records; the messages are those of the bad
    records skipped since the previous chunk. A last, empty chunk carries the messages of
    bad records after the last good one (or says the file held no records at all).
    """
    messages: list[str] = []

    def warn(message: str) -> None:
        messages.append(message.replace(source.path, source.name, 1))

    try:
        reader = open_records(
            source.path,
            source.format,
            field=opts.field,
            id_field=opts.id_field,
            on_error=opts.on_error,
            warn=warn,
        )
        with reader:
            records = iter(reader)
            number = 0
            while chunk := list(islice(records, opts.chunk_size)):
                yield number, pickle.dumps((chunk, messages[:]))
                messages.clear()
                number += 1
            if messages or number == 0:
                yield number, pickle.dumps(([], messages[:]))
    except InputError as e:
        raise renamed(e, source.path, source.name) from None
