"""/tokenize: every token of each input with its character span (TEI's /tokenize)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..bodies import JsonRoute
from ..errors import ApiError, documented
from ..schemas import SimpleToken, TokenizeRequest
from ..tokenization import TooManyTokens
from .pipeline import State, admitted, check_count, json_response

router = APIRouter(tags=["tokenizer"], route_class=JsonRoute)


@router.post("/tokenize", response_model=list[list[SimpleToken]],
             responses=documented(400, 413, 415, 422, 429, 503))
async def tokenize(body: TokenizeRequest, state: State) -> Response:
    """Every token of each input (untruncated), with character offsets into it. At most
    max_tokenize_tokens (see /info) tokens in all, which bounds the response (~60 bytes a
    token); more is a 422."""
    tokenization, queue = state.require_ready()
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(state, len(texts))
    with admitted(queue):  # tokenising is work: it takes a slot like the embedding routes
        try:
            lists = await run_in_threadpool(tokenization.tokens, texts, body.add_special_tokens,
                                            state.info["max_tokenize_tokens"])
        except TooManyTokens as e:
            raise ApiError(422, str(e), "too_many_tokens") from None
        return json_response([[t.__dict__ for t in tokens] for tokens in lists])
