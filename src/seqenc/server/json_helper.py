"""The helper process that parses large request bodies for the server (``bodies.py``), so
that the event loop never runs a long ``json.loads``. Standard library only: it starts in
~50 ms and holds no model.

Protocol on stdin/stdout, one request at a time: the server writes a header (value limit,
body length: two little-endian uint64) and the body; the helper answers with a length
(uint64) and a pickle of ``parse_counted(body, limit)``. It exits when stdin closes.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
from typing import Any

HEADER = struct.Struct("<QQ")
LENGTH = struct.Struct("<Q")


def parse_counted(body: bytes, limit: int) -> tuple[str, Any]:
    """("ok", value) when ``body`` parses to at most ``limit`` JSON values (objects, arrays,
    keys, strings, numbers...), else ("values", None), ("syntax", (message, position)) or
    ("invalid", reason). Never raises."""
    try:
        value = json.loads(body)
    except json.JSONDecodeError as e:
        return "syntax", (e.msg, e.pos)
    except (ValueError, RecursionError) as e:  # not UTF-8; nested past the parser's depth
        return "invalid", f"{type(e).__name__}: {str(e)[:200]}"
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.values())
            count += len(item)  # the keys
        if count > limit:
            return "values", None
    return "ok", value


def main() -> None:
    read, write = sys.stdin.buffer, sys.stdout.buffer
    try:
        while len(header := read.read(HEADER.size)) == HEADER.size:
            limit, size = HEADER.unpack(header)
            reply = pickle.dumps(parse_counted(read.read(size), limit), pickle.HIGHEST_PROTOCOL)
            write.write(LENGTH.pack(len(reply)) + reply)
            write.flush()
    except (BrokenPipeError, KeyboardInterrupt):  # the server went away, or Ctrl-C reached
        pass  # the whole process group: nothing to report either way


if __name__ == "__main__":
    main()
