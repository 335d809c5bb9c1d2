"""Optional extras: import a module that only an extra installs, or say in one line which.

``pip install seqenc`` brings what encoding needs; parquet (``io``), plots (``viz``) and the
HTTP server (``serve``) need more. Every place that imports one of those goes through
``require``, so a missing one is always the same one-line error (and, from the command line,
the same exit code, ``seqenc.exits.EXIT_EXTRA``) rather than a traceback. Standard library
only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> the modules it installs (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "io": ("pyarrow",),
    "viz": ("matplotlib",),
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
    "bench": ("sentence_transformers", "transformers", "onnx", "onnxruntime", "openvino"),
    "ray": ("ray",),  # seqenc encode --engine ray
}


class MissingExtra(ImportError):
    """A feature needs a module from an optional extra that is not installed."""

    def __init__(self, feature: str, module: str, extra: str, reason: str = ""):
        self.feature, self.module, self.extra = feature, module, extra
        top = module.split(".")[0]
        why = f"which cannot be imported ({reason})" if reason else "which is not installed"
        super().__init__(f"{feature} needs {top}, {why}: pip install 'seqenc[{extra}]'",
                         name=module)


def extra_of(module: str) -> str:
    top = module.split(".")[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return extra
    raise KeyError(f"{module!r} belongs to no seqenc extra")


def require(module: str, feature: str) -> ModuleType:
    """``import module`` for ``feature`` (e.g. "reading parquet"), or MissingExtra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == \
            module.split(".")[0]
        raise MissingExtra(feature, module, extra_of(module), "" if missing else str(e)) \
            from None
