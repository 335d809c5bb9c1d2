"""Errors as the client sees them: ``{"error": ..., "error_type": ...}`` with a 4xx status for
anything a client can cause, 5xx only for a server fault.

Routes raise ``ApiError``; the handlers installed by ``install_error_handlers`` turn it, and
FastAPI's own validation and HTTP errors, into that shape. ``documented`` lists a route's
errors for the OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .schemas import ErrorResponse, OpenAIErrorResponse

log = logging.getLogger("seqenc.server")

# Routes whose errors take OpenAI's shape (middleware.OpenAIErrorMiddleware reshapes them)
OPENAI_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
CLIENT_CLOSED = 499  # nginx's status for a client that went away; nobody receives it
_STATUS_TYPES = {400: "invalid_json", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "validation",
                 429: "overloaded", 503: "not_ready"}
_DESCRIPTIONS = {
    400: "The body is not JSON (malformed, or not UTF-8)",
    404: "This server was started without the model the route needs (model_not_loaded)",
    413: "The body is larger than the payload limit",
    415: "The Content-Type is not application/json",
    422: "Valid JSON, invalid request: wrong types, empty input, too many inputs, an input "
         "too long without truncate, a token id outside the vocabulary, bad dimensions",
    429: "max_concurrent_requests requests are in progress, or request bodies in progress "
         "hold max_buffered_bytes; retry after the Retry-After header's seconds",
    503: "The model is loading or warming up, or failed to load",
}


class ApiError(Exception):
    """A failure to report to the client as ``{"error", "error_type"}``."""

    def __init__(self, status: int, message: str, error_type: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = (status, message, error_type,
                                                                    headers)


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


def error_response(status: int, message: str, error_type: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status, headers=headers)


def documented(*codes: int, shape: str = "seqenc") -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it can answer, for the OpenAPI doc. A
    route that reads a JSON body (400) also answers 415 for a body of another type.
    ``shape="openai"``: the body is OpenAI's (``openai_error``)."""
    if 400 in codes and 415 not in codes:
        codes = (*codes, 415)
    model = OpenAIErrorResponse if shape == "openai" else ErrorResponse
    return {code: {"model": model, "description": _DESCRIPTIONS[code]}
            for code in sorted(codes)}


def openai_error(body: dict[str, Any]) -> dict[str, Any]:
    """``{"error": message, "error_type": t}`` in OpenAI's shape."""
    return {"error": {"message": body["error"], "type": body["error_type"], "param": None,
                      "code": None}}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, lambda r, e: error_response(e.status, e.message,
                                                                    e.error_type, e.headers))
    app.add_exception_handler(ClientGone, lambda r, e: Response(status_code=CLIENT_CLOSED))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def clip(value: Any, limit: int = 40) -> str:
    """``value`` for an error message, at most ``limit`` characters: errors never echo a
    payload back (a 4,000-digit number, a megabyte of text)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    ours = next((e for e in errors if e.get("type", "").startswith("seqenc_")), None)
    if ours is not None:  # from .shapes: a complete message, naming the field and index
        return error_response(422, clip(ours["msg"], 300), ours["type"][len("seqenc_"):])
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(400, f"request body is not valid JSON: {reason}", "invalid_json")
    empty = next((e for e in errors if e.get("type") == "too_short"), None)
    if empty is not None:  # an empty list, where at least one item is needed
        field = ".".join(str(part) for part in empty["loc"][1:] if not _is_union_tag(part))
        return error_response(422, f"{field} is empty: send at least one input", "empty")
    messages: list[str] = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ()) if not _is_union_tag(part)]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        if not loc:
            message = ("request body is required: a JSON object" if e.get("type") == "missing"
                       else "request body must be a JSON object")
        else:
            message = f"{clip('.'.join(loc), 100)}: {clip(e.get('msg', 'invalid'), 200)}"
        if message not in messages:
            messages.append(message)
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return error_response(422, "; ".join(messages[:3]) + more, "validation")


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member an error came from in its location: "list[str]", or a
    # model's class name (POST /'s bodies; field names are lower case)
    return isinstance(part, str) and ("[" in part or part in ("str", "int")
                                      or part[:1].isupper())


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = _STATUS_TYPES.get(exc.status_code, "validation")
    message = str(exc.detail)
    if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, say)
        message = f"request body could not be read as JSON: {exc.detail}"
    return error_response(exc.status_code, message, error_type, dict(exc.headers or {}))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}", "backend")
