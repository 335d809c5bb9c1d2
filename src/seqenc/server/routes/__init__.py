"""The HTTP routes, one module per group, each an ``APIRouter`` named ``router``.

To add a route: write it in a module here (or a new one) on that module's ``router``, take the
state with ``state: State`` (see ``pipeline``), do the work through the helpers in
``pipeline`` (a concurrency slot, tokenisation, the batching queue), answer with
``json_response``, and list a new module in ``ROUTERS`` below. Metrics label it by its path
without further registration.
"""

from __future__ import annotations

from . import cohere, embeddings, root, search, server, tokenize

ROUTERS = [embeddings.router, cohere.router, tokenize.router, search.router, root.router,
           server.router]
