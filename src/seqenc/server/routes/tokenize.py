"""/tokenize: every token of each input with its character span (TEI's /tokenize)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import documented
from ..schemas import SimpleToken, TokenizeRequest
from .pipeline import State, check_count, json_response

router = APIRouter(tags=["tokenizer"])


@router.post("/tokenize", response_model=list[list[SimpleToken]],
             responses=documented(400, 413, 422, 503))
async def tokenize(body: TokenizeRequest, state: State) -> Response:
    """Every token of each input (untruncated), with character offsets into it."""
    tokenization, _ = state.require_ready()
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(state, len(texts))
    lists = await run_in_threadpool(tokenization.tokens, texts, body.add_special_tokens)
    return json_response([[t.__dict__ for t in tokens] for tokens in lists])
