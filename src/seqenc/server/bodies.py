"""JSON request bodies parsed without stalling the event loop.

``json.loads`` holds the GIL for the whole parse, so a thread does not help: a 2 MB body of
660k ``[]`` took 0.5-1.8 s to parse and 0.6 s more to walk, all on the event loop, and a
client posting such bodies in a loop slowed every other client and /health (issue 17). Here
bodies up to ``INLINE_BYTES`` are parsed in place (a few milliseconds at worst); larger ones
in a helper process (``json_helper``: one, spawned by multiprocessing on the first large body,
restarted if it dies), which also counts the JSON values and refuses a body holding more than
any valid request needs, so what comes back to the event loop is small whatever was sent.

``JsonRoute`` is the route class of every router: FastAPI reads a body through
``request.json()``, which its request class replaces with ``BodyParser.loads``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import pickle
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from .json_helper import LIMIT, serve
from .shapes import MAX_INPUTS

log = logging.getLogger("seqenc.server")

INLINE_BYTES = 16 * 1024  # parsed on the event loop: at most ~5k containers, a few ms
STOP_SECONDS = 5.0  # a helper that has not exited this long after its pipe closed is killed
LONGEST_INPUT = 8192  # tokens: the longest input of any encoder served (ModernBERT)


class BodyParser:
    """``await loads(body)``: the parsed body, or json.JSONDecodeError (400), ValueError (400:
    not UTF-8, or nested too deep) or HTTPException 422 (more values than ``max_values()``)
    or 503 (the helper died mid-request)."""

    def __init__(self, max_values: Callable[[], int]):
        self.max_values = max_values
        self._helper: Helper | None = None
        self._lock: asyncio.Lock | None = None

    async def loads(self, body: bytes) -> Any:
        if len(body) <= INLINE_BYTES:
            return json.loads(body)
        limit = self.max_values()
        # Shielded: a cancelled request (client gone, shutdown) must not leave a reply
        # unread in the pipe, where the next request would read it as its own.
        kind, value = await asyncio.shield(self._exchange(body, limit))
        if kind == "ok":
            return value
        if kind == "syntax":
            message, position = value
            raise json.JSONDecodeError(message, "", position)
        if kind == "values":
            raise HTTPException(422, f"the body holds more than {limit} JSON values; no valid "
                                "request needs that many")
        if kind == "gone":
            raise HTTPException(503, "the server could not parse the body; retry")
        raise ValueError(value)

    async def _exchange(self, body: bytes, limit: int) -> tuple[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                if self._helper is None or not self._helper.alive():
                    self._helper = await asyncio.to_thread(Helper)
                return await asyncio.to_thread(self._helper.parse, body, limit)
            except (OSError, EOFError) as e:  # killed for memory, say, or could not start
                log.error("the JSON helper process failed (%s: %s); starting another",
                          type(e).__name__, e)
                await self._stop()
                return "gone", None

    async def _stop(self) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            await asyncio.to_thread(helper.stop)

    async def close(self) -> None:
        """Stop the helper (the lifespan's end)."""
        if self._lock is None:
            await self._stop()
            return
        async with self._lock:
            await self._stop()


class Helper:
    """One json_helper process and the server's end of its pipe. Blocking calls: the
    BodyParser runs them in a thread, where waiting on the pipe does not hold the GIL."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process running torch
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), daemon=True,
                                       name="seqenc-json-helper")
        try:
            self.process.start()
        finally:
            child.close()  # the helper's end lives in the helper: EOF there once we close

    def alive(self) -> bool:
        return self.process.is_alive()

    def parse(self, body: bytes, limit: int) -> tuple[str, Any]:
        self.conn.send_bytes(LIMIT.pack(limit) + body)
        return pickle.loads(self.conn.recv_bytes())

    def stop(self) -> None:
        self.conn.close()  # it exits when its pipe closes
        self.process.join(STOP_SECONDS)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()


class _Request(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = await self.app.state.body_parser.loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An APIRoute whose request bodies go through the app's ``BodyParser``, and whose input
    lists are checked against max_client_batch_size before they are walked (``shapes``)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            MAX_INPUTS.set(request.app.state.server.settings.max_client_batch_size)
            return await handler(_Request(request.scope, request.receive))

        return handle
