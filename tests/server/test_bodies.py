"""Request bodies parsed off the event loop (bodies.py, json_helper.py): the helper's value
count, its errors, and the parser's round trip through the helper process."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.exceptions import HTTPException

from seqenc.server.bodies import INLINE_BYTES, BodyParser
from seqenc.server.json_helper import parse_counted


@pytest.mark.parametrize("body, limit, expected", [
    (b'{"input": ["a", "b"]}', 5, ("ok", {"input": ["a", "b"]})),  # object, key, list, 2 texts
    (b'{"input": ["a", "b"]}', 4, ("values", None)),
    (b'[[1, 2], [3]]', 6, ("ok", [[1, 2], [3]])),
    (b'[[1, 2], [3]]', 5, ("values", None)),
    (b'[' + b','.join([b'{}'] * 100_000) + b']', 1000, ("values", None)),
    (b'{"input": [1, }', 100, ("syntax", ("Expecting value", 14))),
])
def test_parse_counted_counts_every_json_value(body, limit, expected):
    assert parse_counted(body, limit) == expected


def test_parse_counted_reports_bodies_it_cannot_read_without_raising():
    kind, reason = parse_counted(b'{"a": "\xff"}', 10)
    assert kind == "invalid" and "UnicodeDecodeError" in reason
    kind, reason = parse_counted(b"[" * 200_000 + b"]" * 200_000, 10)
    assert kind == "invalid" and "RecursionError" in reason


def test_large_bodies_round_trip_through_the_helper_and_errors_keep_their_position():
    parser = BodyParser(lambda: 10_000)
    big = {"inputs": [f"{i} " + "é" * 3000 for i in range(8)], "truncate": True}
    raw = json.dumps(big, ensure_ascii=False).encode()
    assert len(raw) > INLINE_BYTES

    async def scenario():
        try:
            assert await parser.loads(raw) == big
            assert await parser.loads(b'{"inputs": "small"}') == {"inputs": "small"}
            with pytest.raises(json.JSONDecodeError) as bad:
                await parser.loads(raw[:-1] + b",")
            with pytest.raises(json.JSONDecodeError) as inline:
                json.loads(raw[:-1] + b",")
            assert (bad.value.msg, bad.value.pos) == (inline.value.msg, inline.value.pos)
            with pytest.raises(HTTPException) as many:
                await parser.loads(json.dumps([0] * 20_000).encode())
            assert many.value.status_code == 422 and "10000 JSON values" in many.value.detail
            with pytest.raises(ValueError, match="UnicodeDecodeError"):
                await parser.loads(b'["' + b"a" * INLINE_BYTES + b'\xff"]')
            helper = parser._helper
            assert helper is not None and helper.alive()
        finally:
            await parser.close()
        assert helper.process.exitcode == 0  # it exits when its pipe closes

    asyncio.run(scenario())
