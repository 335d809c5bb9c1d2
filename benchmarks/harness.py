"""What the A/B benchmark scripts share: the bench corpus, another build's C kernels loaded beside
this one's, the int8 copy of a model on a chosen kernel, CPU seconds, cosines, and the
interleaved rounds (A B C A B C ...: every arm sees the same CPU state, which on a shared host
drifts between seconds) with one comparison of each arm against the first.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import resource
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from seqenc import int8
from seqenc.model import SentenceEncoder
from seqenc.precision import made_from

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.txt"


def encode_options(parser: argparse.ArgumentParser, *, texts: int = 1000,
                   threads: int = 2) -> argparse.ArgumentParser:
    """The options every encode A/B takes: --texts, --rounds, --threads, --json."""
    parser.add_argument("--texts", type=int, default=texts, help="the corpus's first N texts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    return parser


def read_texts(limit: int | None = None, corpus: Path | str = CORPUS) -> list[str]:
    """The corpus's non-blank lines, the first ``limit`` of them (all: None)."""
    texts = [t for t in Path(corpus).read_text(encoding="utf-8").splitlines() if t.strip()]
    return texts[:limit]


def load_kernels(path: Path) -> ModuleType:
    """Another build's seqenc._kernels (its .so, e.g. main's, built there with `setup.py
    build_ext --inplace`), loaded as a module of its own beside this one's: dlopen keys on the
    path, so the two copies' functions and statics stay apart."""
    loader = importlib.machinery.ExtensionFileLoader("seqenc._kernels", str(path))
    spec = importlib.util.spec_from_file_location("seqenc._kernels", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def int8_encoder_on(model: SentenceEncoder, gemm: str | None) -> torch.nn.Module:
    """The int8 copy of ``model``'s encoder whose layers run the int8 kernel ``gemm`` (None:
    oneDNN's torch._int_mm), recorded as made from the model's weights, so that encode takes it
    once put in ``model._encoders[torch.int8]`` rather than making its own."""
    saved, int8.GEMM = int8.GEMM, gemm  # int8.layer_gemm reads it as the copy is made
    try:
        return made_from(int8.int8_encoder(model.encoder, model.tokenizer), model.encoder)
    finally:
        int8.GEMM = saved


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine between each row of ``a`` and the same row of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@dataclass
class Timings:
    """What ``interleaved`` measured, per arm, in the order the arms were given."""

    outputs: dict[Hashable, Any] = field(default_factory=dict)  # each arm's last call's output
    seconds: dict[Hashable, list[float]] = field(default_factory=dict)  # on the given clock
    cpu_seconds: dict[Hashable, list[float]] = field(default_factory=dict)  # of the process

    def median(self, arm: Hashable) -> float:
        return statistics.median(self.seconds[arm])


def interleaved(runs: Mapping[Hashable, Callable[[], Any]], rounds: int, *, warm_up: int = 1,
                clock: Callable[[], float] = time.perf_counter,
                setup: Callable[[Hashable], object] | None = None) -> Timings:
    """Every arm ``warm_up`` times (untimed), then ``rounds`` rounds of every arm in turn, each
    call timed on ``clock`` (time.thread_time: this thread's CPU time, which a busy neighbour
    disturbs less than wall time) and in the process's CPU seconds. ``setup(arm)`` runs before
    each call, outside the clocks (swap a build in, restore an input)."""
    timings = Timings(seconds={arm: [] for arm in runs}, cpu_seconds={arm: [] for arm in runs})
    for round_ in range(warm_up + rounds):
        for arm, run in runs.items():
            if setup is not None:
                setup(arm)
            cpu, start = cpu_seconds(), clock()
            output = run()
            stop, cpu_stop = clock(), cpu_seconds()
            timings.outputs[arm] = output
            if round_ >= warm_up:
                timings.seconds[arm].append(stop - start)
                timings.cpu_seconds[arm].append(cpu_stop - cpu)
    return timings


def encode_versus_first(args: argparse.Namespace,
                        arms: Callable[[SentenceEncoder, list[str]], Mapping[str, Callable]]
                        ) -> dict[str, dict]:
    """An encode A/B (encode_options' args): the arms ``arms(model, texts)`` makes, interleaved;
    per arm its seconds, median, texts/s, speed over the first arm's and whether its vectors
    are the first arm's bit for bit, printed a line an arm and written to --json."""
    texts = read_texts(args.texts)
    torch.set_num_threads(args.threads)
    timings = interleaved(arms(SentenceEncoder.from_pretrained(), texts), args.rounds)
    first = next(iter(timings.seconds))
    result = {}
    for name in timings.seconds:
        median = timings.median(name)
        same = bool(np.array_equal(timings.outputs[name], timings.outputs[first]))
        result[name] = {"seconds": timings.seconds[name], "median_s": median,
                        "texts_per_s": len(texts) / median,
                        "vs_first": timings.median(first) / median, "identical_to_first": same}
        print(f"{name:40s} {median:7.3f} s {len(texts) / median:8.1f} texts/s "
              f"x{result[name]['vs_first']:.3f}  identical {same}")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "rounds": args.rounds,
                                         "threads": args.threads, "arms": result}, indent=1))
    return result
