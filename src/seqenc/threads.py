"""PyTorch's intra-op CPU threads, set in one place for every entry point.

The thread pool is process-wide. ``seqenc encode``, ``serve`` and ``bench`` take
``--threads N``; on a machine shared with other work, fewer threads than cores keeps forward
passes from stalling on a descheduled thread. Processes that torchrun starts on one machine
share its cores, so each takes cores // LOCAL_WORLD_SIZE unless OMP_NUM_THREADS says otherwise.
Standard library at import (torch is imported when a count is set), so the CLI starts fast.
"""

from __future__ import annotations

import os


def set_threads(threads: int | None) -> None:
    """Run PyTorch's CPU ops on ``threads`` threads; None leaves PyTorch's own choice."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    import torch

    torch.set_num_threads(threads)


def torchrun_share() -> int | None:
    """This process's share of the cores when torchrun runs several on this machine and
    OMP_NUM_THREADS is unset; else None."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if "OMP_NUM_THREADS" in os.environ or local <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // local)
