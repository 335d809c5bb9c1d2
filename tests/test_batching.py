"""The one batch planner (seqenc.batching), used by SentenceEncoder.encode and the server's
queue: the cheapest plan within its limits, never more padding than fixed chunks, and
encode's vectors back in input order whatever the plan."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqenc.batching import PASS_COST_TOKENS, plan_batches


def plan_cost(lengths: list[int], bounds: list[int], pass_cost: int) -> int:
    return sum(pass_cost + (j - i) * lengths[i] for i, j in pairwise(bounds))


def padded(lengths, bounds) -> int:
    """Padding tokens computed: rows x longest, less the real tokens."""
    return plan_cost(list(lengths), bounds, 0) - int(sum(lengths))


def all_plans(n: int):
    """Every way to cut n sorted texts into contiguous runs."""
    for mask in range(2 ** max(n - 1, 0)):
        yield [0, *(k + 1 for k in range(n - 1) if mask >> k & 1), n]


def greedy(lengths, max_rows: int, max_tokens: int | None = None) -> list[int]:
    """The planner encode used before: fixed chunks of max_rows, or with a token budget as
    many rows as fit behind the longest (at least one)."""
    bounds, lo, n = [0], 0, len(lengths)
    while lo < n:
        rows = max_rows if max_tokens is None else max(1, max_tokens // max(lengths[lo], 1))
        lo = min(lo + rows, n)
        bounds.append(lo)
    return bounds


def simple_dp(lengths, max_rows, max_tokens, pass_cost) -> float:
    """The plain O(n x rows) dynamic programme (the server's planner before the merge)."""
    n = len(lengths)
    best = [0] + [float("inf")] * n
    for j in range(1, n + 1):
        for i in range(j - 1, max(0, j - max_rows) - 1, -1):
            size = (j - i) * lengths[i]
            if size > max_tokens and j - i > 1:
                break
            best[j] = min(best[j], best[i] + pass_cost + size)
    return best[n]


sorted_lengths = st.lists(st.integers(1, 300), min_size=1, max_size=9).map(
    lambda xs: sorted(xs, reverse=True))


@settings(max_examples=200, deadline=None)
@given(lengths=sorted_lengths, batch_size=st.integers(1, 6), budget=st.integers(1, 1200),
       pass_cost=st.integers(0, 64))
def test_plan_is_the_cheapest_plan_within_limits(lengths, batch_size, budget, pass_cost):
    def allowed(bounds):
        return all(j - i <= batch_size and ((j - i) * lengths[i] <= budget or j - i == 1)
                   for i, j in pairwise(bounds))

    bounds = plan_batches(lengths, batch_size, budget, pass_cost)
    assert bounds[0] == 0 and bounds[-1] == len(lengths)
    assert allowed(bounds)
    cheapest = min(plan_cost(lengths, b, pass_cost) for b in all_plans(len(lengths))
                   if allowed(b))
    assert plan_cost(lengths, bounds, pass_cost) == cheapest


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=300).map(
           lambda xs: sorted(xs, reverse=True)),
       batch_size=st.integers(1, 64), budget=st.integers(1, 2000), pass_cost=st.integers(0, 64))
def test_plan_matches_the_plain_dynamic_programme_on_long_inputs(lengths, batch_size, budget,
                                                                 pass_cost):
    bounds = plan_batches(lengths, batch_size, budget, pass_cost)
    assert plan_cost(lengths, bounds, pass_cost) == simple_dp(lengths, batch_size, budget,
                                                              pass_cost)


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 256), min_size=1, max_size=200).map(
           lambda xs: sorted(xs, reverse=True)),
       batch_size=st.integers(1, 64), budget=st.one_of(st.none(), st.integers(1, 10_000)))
def test_never_more_padding_than_the_greedy_plan(lengths, batch_size, budget):
    rows = batch_size if budget is None else None  # encode: rows, or a token budget alone
    ours = plan_batches(lengths, rows, budget)
    theirs = greedy(lengths, batch_size, budget)
    assert padded(lengths, ours) <= padded(lengths, theirs)
    assert len(ours) - 1 <= len(theirs) - 1 + padded(lengths, theirs) // PASS_COST_TOKENS


def test_rows_and_budget_are_respected():
    lengths = np.array([300, 120, 100, 40, 40, 40, 10, 3])
    assert greedy(lengths, 3) == [0, 3, 6, 8]  # fixed chunks pad 120 and 100 to 300...
    bounds = plan_batches(lengths, 3)
    assert bounds == [0, 1, 3, 6, 8]  # ...the plan runs the 300-token text alone
    assert padded(lengths, bounds) < padded(lengths, greedy(lengths, 3))
    assert all(j - i <= 3 for i, j in pairwise(bounds))
    bounds = plan_batches(lengths, None, 256)
    assert bounds[:2] == [0, 1]  # one over-budget text still gets its own batch
    assert bounds[-1] == len(lengths)
    for i, j in pairwise(bounds[1:]):
        assert (j - i) * lengths[i] <= 256


def test_splits_off_the_long_tail():
    lengths = [120, 60, *[12] * 30]
    bounds = plan_batches(lengths, 32, 8192, 32)
    assert bounds[:2] == [0, 1]  # the 120-token text does not pad thirty 12-token ones
    assert plan_cost(lengths, bounds, 32) < plan_cost(lengths, [0, 32], 32)
    assert plan_batches([5] * 10, 32, 8192, 32) == [0, 10]  # equal lengths: one pass


def test_no_texts_and_unsorted_lengths():
    assert plan_batches([], 32) == [0]
    with pytest.raises(ValueError, match="longest first"):
        plan_batches([3, 5], 32)


def test_many_short_texts_under_a_large_budget_plan_in_one_pass_per_budget():
    lengths = [8] * 50_000  # rows per pass bounded only by the budget: 1024
    bounds = plan_batches(lengths, None, 8192)
    assert all(j - i == 1024 for i, j in pairwise(bounds[:-1]))
    assert len(bounds) - 1 == -(-50_000 // 1024)


def test_encode_returns_vectors_in_input_order_whatever_the_plan():
    from seqenc.model import SentenceEncoder

    model = SentenceEncoder.from_pretrained()
    rng = np.random.default_rng(0)
    words = "the a cat sat on mat while dogs ran far away and slept".split()
    texts = [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(1, 40, size=24)]
    alone = np.stack([model.encode(t) for t in texts[:6]])
    for kwargs in ({"batch_size": 5}, {"batch_tokens": 100}, {"batch_size": 64}):
        vectors = model.encode(texts, **kwargs)
        np.testing.assert_allclose(vectors[:6], alone, atol=1e-5)
        perm = rng.permutation(len(texts))
        shuffled = model.encode([texts[i] for i in perm], **kwargs)
        np.testing.assert_allclose(shuffled, vectors[perm], atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 256), min_size=0, max_size=200).map(
           lambda xs: sorted(xs, reverse=True)),
       batch_size=st.integers(1, 64), budget=st.one_of(st.none(), st.integers(1, 10_000)))
def test_fewest_passes_then_least_padding(lengths, batch_size, budget):
    """encode's plan (pass_cost=None): as few passes as fixed chunks, never more padding."""
    rows = batch_size if budget is None else None
    ours = plan_batches(lengths, rows, budget, pass_cost=None)
    theirs = greedy(lengths, batch_size, budget)
    assert len(ours) == len(theirs)  # greedy takes the fewest passes possible
    assert padded(lengths, ours) <= padded(lengths, theirs)


def test_fewest_passes_can_pad_less_than_fixed_chunks():
    lengths = [300, 120, 100, 40, 40, 40, 10, 3]
    assert greedy(lengths, 3) == [0, 3, 6, 8]
    assert plan_batches(lengths, 3, None, pass_cost=None) == [0, 2, 5, 8]  # also 3 passes
    assert padded(lengths, [0, 2, 5, 8]) < padded(lengths, [0, 3, 6, 8])
