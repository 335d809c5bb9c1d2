"""Shared fixtures. Keep them tiny so the whole suite stays fast on two CPU cores."""

from __future__ import annotations

from collections.abc import Callable

# seqenc before torch, as its users import it: `import seqenc` caps OpenMP's spin-wait, which
# libgomp reads once, as torch loads it (threads.py), so the suite's kernels wait as users' do
from seqenc.nn import EncoderConfig  # isort: skip

import pytest
import torch

# Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the threads
# wait on each other: one forward pass of the tiny encoder took ~130 ms with 2 threads, <1 ms
# with one.
torch.set_num_threads(1)


def _cpu_path() -> str:
    from seqenc.nn import kernels

    return (f"cpu: torch capability {torch.backends.cpu.get_cpu_capability()}; "
            f"kernels: {kernels.describe()}")


def pytest_report_header(config) -> list[str]:
    """Which CPU path ran: kernel tests hold every path to the same bounds, but say which."""
    return [_cpu_path()]


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(_cpu_path())  # also under -q, which hides the header

# 2 layers, d_model 32, 4 heads: big enough to exercise every code path, small enough for CPU
TINY = dict(
    vocab_size=50,
    d_model=32,
    n_heads=4,
    n_layers=2,
    d_ff=64,
    max_positions=32,
    dropout=0.0,
    attention_dropout=0.0,
)


def _make_cfg(**overrides) -> EncoderConfig:
    return EncoderConfig(**{**TINY, **overrides})


@pytest.fixture(scope="session")
def make_cfg() -> Callable[..., EncoderConfig]:
    """Factory: ``make_cfg(norm="pre")`` is the tiny config with fields overridden.

    Session-scoped so that hypothesis tests may use it (no per-example state).
    """
    return _make_cfg


@pytest.fixture
def tiny_cfg() -> EncoderConfig:
    """The tiny config itself, without dropout so outputs are deterministic."""
    return _make_cfg()


@pytest.fixture
def spy(monkeypatch) -> Callable[[object, str], list[int]]:
    """``calls = spy(module, "name")``: module.name still runs, and each call appends to
    ``calls`` (which path a forward pass took, without timing it)."""

    def install(owner: object, name: str) -> list[int]:
        calls: list[int] = []
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or real(*a, **k))
        return calls

    return install


@pytest.fixture
def fake(monkeypatch):
    """The CLI loads a FakeModel (tests/fake_model.py), whatever --model says; here it is."""
    from fake_model import use_fake_model

    return use_fake_model(monkeypatch)
