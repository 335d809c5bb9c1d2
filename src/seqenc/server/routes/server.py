"""The server's own routes: /health, /info, /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..bodies import JsonRoute
from ..errors import documented
from ..schemas import HealthResponse, InfoResponse
from .pipeline import State

router = APIRouter(tags=["server"], route_class=JsonRoute)


@router.get("/health", response_model=HealthResponse, responses=documented(503))
async def health(state: State) -> dict[str, str]:
    """200 once the model is loaded and warmed up; 503 before (or if loading failed).
    Never needs the API key."""
    state.require_loaded()
    return {"status": "ok"}


@router.get("/info", response_model=InfoResponse, responses=documented(503))
async def info(state: State) -> dict[str, Any]:
    """The models (embedding, reranker, sparse: which are loaded), routes and limits."""
    state.require_loaded()
    return state.info


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}},
          "description": "Prometheus text format"}})
async def metrics(state: State) -> Response:
    """Prometheus metrics: requests, queue, batches, durations."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
