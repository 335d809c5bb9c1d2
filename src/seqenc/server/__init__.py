"""seqenc's embedding server: HTTP layer (app), batching queue (queue) and model backend
(backend) in separate modules; ``seqenc serve`` / ``python -m seqenc.server`` run it.

Importing this package imports nothing heavy: fastapi, uvicorn and torch load when the server
starts, so ``seqenc --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .cli import serve

        return serve
    raise AttributeError(f"module 'seqenc.server' has no attribute {name!r}")
