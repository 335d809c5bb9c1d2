"""Run every ```python block of docs/encoder.md, in order, in one namespace."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "encoder.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_block_extraction():
    text = "a\n```python\nx = 1\n```\nb\n```\nnot python\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x\n"]


@pytest.mark.filterwarnings("error")  # a warning in the docs is a defect readers would see
def test_encoder_doc_runs():
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 10, "expected the walk-through's code blocks"
    namespace: dict = {"__name__": "encoder_doc"}
    grad_enabled = torch.is_grad_enabled()  # the doc switches autograd off, as a notebook would
    try:
        for i, source in enumerate(blocks):
            # tracebacks then name the failing block and its line
            exec(compile(source, f"{DOC.name}[block {i}]", "exec"), namespace)
    finally:
        torch.set_grad_enabled(grad_enabled)
    assert namespace["result"].last_hidden_state.shape == (2, 7, 32)
