"""Every closed set of choices seqenc accepts, defined once.

The CLI's ``click.Choice`` lists, the Python API's argument checks, the server's settings and
the trainer's config all read these tuples, so an option cannot offer a different list from
the function behind it. Standard library only: the CLI imports this at start-up and
``seqenc --help`` must stay instant (no torch, numpy or click here).
"""

from __future__ import annotations

from collections.abc import Iterable

DTYPES = ("float32", "bfloat16")  # compute dtype of the forward pass
# encode / inference only: int8 = int8 weights and activations (seqenc.int8; x86-64 CPUs)
ENCODE_DTYPES = (*DTYPES, "int8")
DEVICES = ("cpu", "cuda", "auto")  # auto = cuda when PyTorch sees a GPU, else cpu
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")  # stored vector precision
BINARY_PRECISIONS = ("binary", "ubinary")  # 8 dimensions packed per byte
POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")
ENCODE_OUTPUTS = ("sentence", "token")  # SentenceEncoder.encode(output=...)
INPUT_FORMATS = ("txt", "jsonl", "csv", "tsv", "parquet")
TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")  # training data: columns, so no txt
OUTPUT_FORMATS = ("npy", "parquet", "jsonl")
ENGINES = ("local", "ray")  # encode on this process, or on Ray Data (seqenc[ray])
ON_ERROR = ("raise", "skip")  # what a bad record does: stop the run, or be reported and skipped
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
METRICS = ("accuracy", "macro_f1")  # classifier dev metrics
PAIR_TARGETS = ("score", "label")  # `train pairs`: regression on a score, or classification


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else ValueError("NAME must be one of ...")."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value  # type: ignore[return-value]
