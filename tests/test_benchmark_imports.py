"""The benchmark scripts time seqenc as its users run it: with OpenMP's spin-wait capped.

``import seqenc`` sets GOMP_SPINCOUNT, which libgomp reads once, as torch loads it (threads.py),
so a script that loaded torch before seqenc would time every engine spinning at libgomp's
default. The rule checked here: a script that uses torch or seqenc (anywhere in it, or through
a sibling module it imports) imports seqenc before any other package, at its top. Only standard
library modules may come first (none of them loads libgomp); a sibling module that comes first
must itself start with seqenc. benchmarks/ruff.toml sorts seqenc's imports first, so the linter
keeps the order this test asks for.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
# packages that load torch (and with it libgomp) when imported
TORCH_LOADERS = {"torch", "seqenc", "sentence_transformers", "transformers", "safetensors"}


def _imported(node: ast.stmt) -> list[str]:
    """The top-level package names an import statement loads, in order ([] for others)."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def _tree(name: str) -> ast.Module:
    return ast.parse((BENCHMARKS / f"{name}.py").read_text(encoding="utf-8"))


def _siblings() -> set[str]:
    return {path.stem for path in SCRIPTS}


def uses_torch(name: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether benchmarks/<name>.py imports a torch loader anywhere, or a sibling that does."""
    for node in ast.walk(_tree(name)):
        for package in _imported(node):
            if package in TORCH_LOADERS:
                return True
            if package in _siblings() and package not in seen | {name}:
                if uses_torch(package, seen | {name}):
                    return True
    return False


def first_package(name: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The first package other than the standard library's that benchmarks/<name>.py imports at
    its top, followed into a sibling module: "seqenc" when the cap comes first."""
    for node in _tree(name).body:
        for package in _imported(node):
            if package in sys.stdlib_module_names or package == "__future__":
                continue
            if package in _siblings() and package not in seen | {name}:
                return first_package(package, seen | {name})
            return package
    return None


@pytest.mark.parametrize("script", [path.stem for path in SCRIPTS])
def test_benchmark_scripts_import_seqenc_before_torch(script):
    if not uses_torch(script):
        pytest.skip("imports neither torch nor seqenc")
    first = first_package(script)
    assert first == "seqenc", (
        f"benchmarks/{script}.py imports {first or 'only the standard library'} at its top before "
        "seqenc: the OpenMP spin cap would not apply where torch loads (see benchmarks/ruff.toml)")


def test_the_rule_tells_the_orders_apart(tmp_path, monkeypatch):
    """The check itself: torch first or a sibling that loads torch first fails; seqenc first,
    or standard library modules before it, passes."""
    monkeypatch.setattr(sys.modules[__name__], "BENCHMARKS", tmp_path)
    cases = {"torch_first": "import os\nimport torch\nimport seqenc\n",
             "seqenc_first": "import os\nimport seqenc\nimport torch\n",
             "lazy": "import json\n\ndef main():\n    import torch\n",
             "via_sibling": "import torch_first\nimport seqenc\n",
             "numpy_first": "import numpy\nfrom seqenc import threads\n"}
    for name, source in cases.items():
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "SCRIPTS", sorted(tmp_path.glob("*.py")))
    assert all(uses_torch(name) for name in cases)
    assert {name: first_package(name) for name in cases} == {
        "torch_first": "torch", "seqenc_first": "seqenc", "lazy": None,
        "via_sibling": "torch", "numpy_first": "numpy"}


def test_the_suite_itself_runs_with_the_cap():
    """tests/conftest.py imports seqenc before torch, so kernels run here as users run them."""
    from seqenc.threads import openmp_waits

    assert openmp_waits().startswith("spin capped") or openmp_waits().endswith(
        "(from the environment)"), openmp_waits()
