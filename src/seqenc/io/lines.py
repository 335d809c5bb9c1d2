"""UTF-8 lines with their numbers and byte offsets: what every line-based reader starts from.

Lines split on ``\\n`` only (``\\r\\n`` loses its ``\\r`` too), so U+2028, form feeds and lone
``\\r`` stay inside their line. A leading byte-order mark belongs to the file, not the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

_BOM = b"\xef\xbb\xbf"


def open_binary(path: Path, name: str | None = None) -> BinaryIO:
    """``open(path, "rb")``, or an InputError naming the file."""
    try:
        if path.is_dir():
            raise IsADirectoryError("is a directory")
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read input: {e.strerror or e}", file=name or str(path)) from None


def raw_lines(stream: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line with its terminator); a leading BOM is dropped."""
    offset = 0
    for lineno, raw in enumerate(stream, start=1):
        start = offset
        offset += len(raw)
        if lineno == 1 and raw.startswith(_BOM):
            raw, start = raw[len(_BOM) :], start + len(_BOM)
        yield lineno, start, raw


def strip_eol(raw: bytes) -> bytes:
    """The line without its ``\\n`` or ``\\r\\n``."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw


def decode(raw: bytes, name: str, lineno: int, offset: int) -> str | InputError:
    """Strict UTF-8, or an InputError naming the line and the byte's offset in the file."""
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
    for lineno, offset, raw in raw_lines(stream):
        text = decode(strip_eol(raw), name, lineno, offset)
        if isinstance(text, InputError):
            raise text
        yield lineno, text
