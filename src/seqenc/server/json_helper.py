"""The helper process that parses large request bodies for the server (``bodies.py``), so
that the event loop never runs a long ``json.loads``. It holds no model and imports only the
standard library.

It is started with multiprocessing's *spawn* context, not as ``python -m ...``: spawn hands
the child the server's own ``sys.path`` (a zipapp's archive, a launcher's additions) and
works in frozen installs (PyInstaller's multiprocessing support), where ``sys.executable``
cannot run ``-m``.

Protocol on a multiprocessing Pipe, one request at a time: the server sends one message, the
value limit (little-endian uint64) followed by the body; the helper answers with a pickle of
``parse_counted(body, limit)``. It exits when the server's end of the pipe closes.
"""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

LIMIT = struct.Struct("<Q")


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


def serve(conn: Any) -> None:
    """The helper's loop (the spawned process's target): one body in, one reply out."""
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # the server closed its end: done
                return
            (limit,) = LIMIT.unpack_from(message)
            body = message[LIMIT.size:]
            conn.send_bytes(pickle.dumps(parse_counted(body, limit), pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, KeyboardInterrupt):  # the server went away, or Ctrl-C reached
        pass  # the whole process group: nothing to report either way
