"""Every ```python block of the README runs as printed (in order, one namespace)."""

from __future__ import annotations

import pathlib

from tests.test_docs import python_blocks

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "readme"}
    for i, source in enumerate(blocks):
        exec(compile(source, f"README.md[block {i}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "(3, 384)" in printed  # the Python quick example's shape comment holds
    assert namespace["vectors"].shape == (3, 384)
    lines = printed.splitlines()
    # NumPy reference agrees, as the comment says (printed right after the attention shape)
    assert lines[lines.index("torch.Size([2, 4, 5, 5])") + 1] == "True"
