"""The model backend and the server's tokenisation, in process: same ids and same vectors as
SentenceEncoder for the same batch, in float32 and bfloat16; a pass stopped at shutdown."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from seqenc.server.backend import ModelBackend, interrupt_passes
from seqenc.server.queue import PassInterrupted
from seqenc.server.tokenization import InputTooLong, InvalidTokenIds, Tokenization

from .support import LONG_TEXT, SENTENCES


@pytest.fixture(scope="module")
def tokenization(model) -> Tokenization:
    return Tokenization.from_model(model)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_batch_equals_encode(model, tokenization, dtype):
    texts = SENTENCES[:4]
    ids = tokenization.encode(texts)
    order = np.argsort([-len(x) for x in ids], kind="stable")  # as encode orders a batch
    got = ModelBackend(model, dtype).embed([ids[i] for i in order], [True] * len(ids))
    np.testing.assert_array_equal(got, model.encode(texts, dtype=dtype)[order])


def test_normalisation_is_per_row(model, tokenization):
    ids = tokenization.encode(["one text", "another text"])
    got = ModelBackend(model).embed(ids, [True, False])
    assert np.isclose(np.linalg.norm(got[0]), 1.0)
    np.testing.assert_array_equal(got[1], model.encode(["one text", "another text"],
                                                       normalize=False)[1])


def test_tokenization_matches_the_model_and_cuts_either_end(model, tokenization):
    texts = [LONG_TEXT, "short", ""]
    assert tokenization.encode(texts, truncate=True) == model.tokenizer.encode(texts).ids
    with pytest.raises(InputTooLong, match="input 0 has"):
        tokenization.encode(texts)
    left = tokenization.encode([LONG_TEXT], truncate=True, direction="left")[0]
    full = tokenization.tokenizer.encode(LONG_TEXT).ids
    assert len(left) == 256 and left == [full[0], *full[1:-1][-254:], full[-1]]


def test_token_id_inputs_are_checked(tokenization):
    assert tokenization.check_ids([[101, 7592, 102]]) == [[101, 7592, 102]]
    for bad in ([[]], [[101, tokenization.vocab_size]], [[-1]]):
        with pytest.raises(InvalidTokenIds):
            tokenization.check_ids(bad)
    with pytest.raises(InputTooLong):
        tokenization.check_ids([[101] * 257])


def test_interrupt_passes_stops_the_workers_pass_at_its_next_module_only():
    layers = torch.nn.Sequential(*(torch.nn.Linear(4, 4) for _ in range(3)))
    entered, go = threading.Event(), threading.Event()
    outcome: list[object] = []

    def first_layer_waits(module, args):
        entered.set()
        assert go.wait(60)

    layers[0].register_forward_pre_hook(first_layer_waits)

    def worker() -> None:
        try:
            outcome.append(layers(torch.ones(1, 4)))
        except PassInterrupted as e:
            outcome.append(e)

    thread = threading.Thread(target=worker)
    thread.start()
    assert entered.wait(60)
    handle = interrupt_passes(thread)
    try:
        layers[1:](torch.ones(1, 4))  # another thread's passes are left alone
        go.set()
        thread.join(60)
    finally:
        handle.remove()
    assert len(outcome) == 1 and isinstance(outcome[0], PassInterrupted)
