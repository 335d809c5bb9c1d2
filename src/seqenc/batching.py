"""The batch planner: texts sorted longest first in, forward passes out. The one planner,
used by ``SentenceEncoder.encode`` (a whole corpus chunk) and the server's batching queue
(one window of requests).

A forward pass computes rows x longest row padded tokens whatever its texts' lengths, plus a
fixed cost (per-op overhead, Python, kernel launches) worth ``pass_cost`` tokens. The planner
cuts the sorted texts into passes of at most ``max_rows`` rows and ``max_tokens`` padded
tokens (one longer text still runs alone) so as to minimise padded tokens + ``pass_cost`` per
pass. Fixed chunks of ``max_rows`` texts take the fewest passes possible, so the plan never
computes more padded tokens than they do; on a long tail (one 120-token text among thirty of
12) it splits the tail off rather than padding thirty texts to 120.

``SentenceEncoder.encode`` asks for the fewest passes (``pass_cost=None``): its encoder packs
real tokens (nn/packing.py), so padding costs it little and extra passes cost more. Measured on
400 texts of the bench corpus (all-MiniLM-L6-v2, 1 thread, interleaved rounds on a shared
2-core machine, CPU time): 22 passes under a 32-token pass cost took 1.1% and 2.4% more than
13 fixed chunks of 32 (medians of 9 and 7 rounds); the fewest-passes plan, also 13 passes with
7% fewer padded tokens, took the same (ratio 0.999).

Dynamic programming: ``best[j]``, the cheapest plan for the first j texts, is the minimum over
the start i of the last pass of ``best[i] + pass_cost + (j - i) * lengths[i]``. Texts of one
length L form a group, in which that is ``(best[i] - i * L) + j * L``; the starts allowed for
j (at most ``width(L)`` rows back) form a window that only slides forward as j grows, so a
monotone queue per group yields its minimum at once. Cost: O(n x the groups that reach into
the window) rather than O(n x rows per pass).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import pairwise

# What a forward pass costs beyond its padded tokens, in tokens: all-MiniLM-L6-v2 on one CPU
# core runs (1, 8) tokens in ~8 ms and large batches at ~4k tokens/s, so ~24-32 tokens' worth.
# Larger values favour fewer, fuller passes (right for a GPU, where passes cost far more).
PASS_COST_TOKENS = 32


class _Group:
    """Texts of one length: the candidate starts still inside the window, cheapest first."""

    def __init__(self, length: int, width: int):
        self.length = length
        self.width = width  # the most rows a pass starting with this length may have
        self.starts: deque[tuple[float, int]] = deque()  # (best[i] - i * length, i)

    def push(self, value: float, i: int) -> None:
        while self.starts and self.starts[-1][0] >= value:
            self.starts.pop()  # never better again: a later start is as cheap and lasts longer
        self.starts.append((value, i))

    def cheapest(self, j: int) -> tuple[float, int] | None:
        """(cost of the best last pass [i, j) that starts in this group, i), or None."""
        while self.starts and self.starts[0][1] < j - self.width:
            self.starts.popleft()
        if not self.starts:
            return None
        value, i = self.starts[0]
        return value + j * self.length, i


def plan_batches(
    lengths: Sequence[int],
    max_rows: int | None = None,
    max_tokens: int | None = None,
    pass_cost: int | None = PASS_COST_TOKENS,
) -> list[int]:
    """Cut points ``[0, ..., n]``: pass k runs texts ``[bounds[k], bounds[k + 1])``.

    ``lengths`` are sorted longest first. Each pass has at most ``max_rows`` rows and
    ``max_tokens`` padded tokens (rows x its first, longest, text); None: no limit.
    ``pass_cost=None`` asks for the fewest passes, and the least padding among such plans:
    right when padding costs little, as in the packed encoder (nn/packing.py).
    """
    lengths = [int(x) for x in lengths]
    if any(a < b for a, b in pairwise(lengths)):
        raise ValueError("plan_batches needs lengths sorted longest first")
    n = len(lengths)
    if pass_cost is None:  # one pass more costs more than any plan's padding can
        pass_cost = n * (lengths[0] if lengths else 0) + 1
    best: list[float] = [0.0] * (n + 1)  # best[j]: the cheapest plan for the first j texts
    cut = [0] * (n + 1)  # cut[j]: where that plan's last pass starts
    groups: list[_Group] = []  # the groups with starts inside the window, oldest first
    for j in range(1, n + 1):
        length = lengths[j - 1]
        if not groups or groups[-1].length != length:
            groups.append(_Group(length, _width(length, max_rows, max_tokens)))
        groups[-1].push(best[j - 1] - (j - 1) * length, j - 1)
        best[j] = float("inf")
        live = []
        for group in groups:
            found = group.cheapest(j)
            if found is None:
                continue  # the window has passed this (complete) group for good
            live.append(group)
            cost, i = found
            if cost <= best[j]:  # ties: the later start, as groups come oldest first
                best[j], cut[j] = cost, i
        best[j] += pass_cost
        groups = live
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(cut[bounds[-1]])
    return bounds[::-1]


def _width(length: int, max_rows: int | None, max_tokens: int | None) -> int:
    rows = max_rows if max_rows is not None else 1 << 62
    if max_tokens is not None:
        rows = min(rows, max_tokens // max(length, 1))
    return max(rows, 1)
