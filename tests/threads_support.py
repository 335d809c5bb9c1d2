"""For the tests that a kernel's result does not depend on how many threads share its work."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

T = TypeVar("T")


def at_thread_counts(f: Callable[[], T], counts: Iterable[int] = (1, 2, 3)) -> list[T]:
    """``f()`` with PyTorch's thread count (ours follow it) at each of ``counts`` in turn; the
    caller's count is restored whatever happens. 3 is more threads than a 2-core test machine
    has: the tasks still split."""
    before = torch.get_num_threads()
    try:
        results = []
        for t in counts:
            torch.set_num_threads(t)
            results.append(f())
        return results
    finally:
        torch.set_num_threads(before)
