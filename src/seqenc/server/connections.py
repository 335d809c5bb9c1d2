"""Connections: read deadlines, a cap on open connections, and a shutdown that waits only for
real work.

uvicorn's h11 protocol parses HTTP; this subclass adds timers around it and nothing else.
uvicorn on its own closes a keep-alive connection idle after a response (``timeout_keep_alive``)
and caps a request head at 16 KiB (h11), but a connection that sends nothing, half a head, or
part of a body stays open for ever, and one such connection delays SIGTERM by the whole
``--graceful-timeout`` (issue 17). Here:

- a request head must arrive within ``read_timeout`` seconds of the connection opening (or of
  the previous response, on a kept-alive connection);
- a body must not pause for ``read_timeout`` seconds, and must average ``MIN_BODY_RATE`` bytes
  a second beyond its first ``read_timeout`` seconds (a trickle of a byte a second is a stall);
- a connection that misses its deadline is closed (its request, if any, sees a disconnect);
- past ``max_connections`` open connections, the one idle longest (no request in progress) is
  closed to make room; if none is idle, the new one is answered 503 and closed at once;
- on shutdown uvicorn closes idle connections and those still sending a head at once; those
  sending a body keep their deadlines, so a stalled one goes within ``read_timeout``, and
  requests being worked on finish (up to ``--graceful-timeout``).

Time the server spends not reading (its flow control paused reading because the app has not
consumed the body yet) is not held against the client.
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("seqenc.server")

MIN_BODY_RATE = 64 * 1024  # bytes/s: a 2 MB body has read_timeout + 31 s to arrive


def _full_response() -> bytes:
    body = json.dumps({"error": "too many open connections; retry later",
                       "error_type": "overloaded"}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\nconnection: close\r\ncontent-length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


_FULL = _full_response()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a connection cap (see module doc).
    ``protocol_class`` makes a subclass with the two limits set."""

    read_timeout: float = 10.0
    max_connections: int = 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        now = self.loop.time()
        self._waiting_since = now  # when we began waiting for a request head
        self._last_read = now
        self._body_started = now
        self._body_bytes = 0
        if len(self.connections) > self.max_connections and not self._evict_idle():
            log.debug("refused a connection: %d open, none idle", len(self.connections) - 1)
            transport.write(_FULL)
            transport.close()
            return
        self._arm(now + self.read_timeout)

    def _evict_idle(self) -> bool:
        """At the cap, close the connection idle longest (no request in progress) to make
        room: refusing the new one instead would let idle connections lock clients out."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                and c.conn.their_state is h11.IDLE and not c.transport.is_closing()
                and (c.cycle is None or c.cycle.response_complete)]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._waiting_since)
        oldest.transport.close()
        oldest.connections.discard(oldest)  # counted out now; connection_lost comes later
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self._last_read = now
        was_body = self.conn.their_state is h11.SEND_BODY
        super().data_received(data)
        if not was_body and self.conn.their_state is h11.SEND_BODY:
            self._body_started, self._body_bytes = now, 0
            self._arm(now + self.read_timeout)
        # Counted after the head is parsed, so that the bytes that came with it count too
        # (with a few head bytes: the rate is a floor, not an exact measure).
        self._body_bytes += len(data)

    def on_response_complete(self) -> None:
        self._waiting_since = self.loop.time()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self._waiting_since + self.read_timeout)

    # ---- the deadline ----------------------------------------------------------------------
    def _deadline(self) -> float | None:
        """When the client's time runs out in its current state; None: not the client's turn
        (its request is being worked on)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            return self._waiting_since + self.read_timeout
        if state is h11.SEND_BODY:
            if self.flow.read_paused:  # we are not reading: the client is not late
                self._last_read = self.loop.time()
            return min(self._last_read + self.read_timeout,
                       self._body_started + self.read_timeout + self._body_bytes / MIN_BODY_RATE)
        return None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        deadline = self._deadline()
        if deadline is None:
            return  # on_response_complete arms the next one
        if self.loop.time() < deadline:
            self._arm(deadline)
            return
        log.debug("closed a connection that missed its read deadline (%s)",
                  self.conn.their_state)
        self.transport.close()


def protocol_class(read_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"read_timeout": read_timeout, "max_connections": max_connections})
