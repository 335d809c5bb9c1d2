"""Throughput benchmark: seqenc against sentence-transformers on the same checkpoint, texts and
thread count, interleaved in one process (A B A B ...) after warm-up. A fast wrong answer
fails: the outputs must agree before any speed is reported.

The peer comes from the ``bench`` extra (``pip install 'seqenc[bench]'``); without it
``run_benchmark`` says so in one line (seqenc.extras). Nothing here imports it at import time.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import atomic
from .allocator import tune_memory
from .choices import DTYPES
from .extras import require
from .model import SentenceEncoder
from .precision import native_bf16_matmul

MIN_COSINE = {"float32": 0.99999, "bfloat16": 0.999}


@dataclass
class EngineResult:
    sentences_per_s: float
    tokens_per_s: float
    seconds: list[float]
    peak_fraction: float  # achieved model FLOP/s over the large-GEMM FLOP/s of the same dtype


@dataclass
class ModeResult:
    dtype: str
    seqenc: EngineResult
    peer: EngineResult
    ratio: float  # seqenc / peer sentences per second
    min_cosine_to_peer: float
    min_cosine_to_fp32: float
    gemm_gflops: float  # large-GEMM rate in this mode's dtype (the peer's)
    seqenc_gemm_gflops: float  # ... in the dtype seqenc's GEMMs run in (fp32 for bf16 on CPUs
    # without bf16 matmuls, see precision.py)


@dataclass
class BenchResult:
    machine: dict
    corpus: dict
    modes: list[ModeResult] = field(default_factory=list)
    sweep: list[dict] = field(default_factory=list)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def gemm_gflops(dtype: torch.dtype, n: int = 2048, budget_s: float = 3.0,
                device: str = "cpu") -> float:
    """Large square GEMM throughput: the machine's practical matmul peak for ``dtype``.

    Shrinks the matrix when one product is slow (bf16 without hardware support runs at well
    under 1 GFLOP/s), so the probe stays within about ``budget_s`` seconds.
    """
    if device != "cpu":
        n = max(n, 8192)  # a GPU needs a bigger product to reach its peak

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        sync()
        start = time.perf_counter()
        a @ b  # warm-up, and a first timing
        sync()
        first = time.perf_counter() - start
        if first * 2 <= budget_s or n <= 256:
            break
        n //= 2
    repeats = max(1, min(20 if device != "cpu" else 5, int(budget_s / max(first, 1e-6))))
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def model_flops(model: SentenceEncoder, lengths: np.ndarray) -> float:
    """Multiply-adds x 2 of the encoder layers for sequences of these lengths."""
    cfg = model.encoder.cfg
    D, F, L = cfg.d_model, cfg.d_ff, lengths.astype(np.float64)
    per_layer = 2 * L * (4 * D * D + 2 * D * F) + 4 * L * L * D  # projections + QK^T, AV
    return float(cfg.n_layers * per_layer.sum())


def interleave(engines: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, run in engines.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def run_benchmark(
    texts: Sequence[str],
    model_name: str | None = None,
    dtypes: Sequence[str] = DTYPES,
    batch_size: int = 32,
    batch_tokens: int | None = None,
    rounds: int = 3,
    threads: int | None = None,
    sweep_lengths: Sequence[int] = (16, 32, 64, 128, 256, 512),
    sweep_texts: int = 64,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> BenchResult:
    """``device`` "cuda" runs both engines on the GPU (the peak probe too); see README."""
    SentenceTransformer = require("sentence_transformers", "seqenc bench").SentenceTransformer
    if threads:
        torch.set_num_threads(threads)
    tune_memory()  # process-wide: both engines run with the same allocator settings
    model = SentenceEncoder.from_pretrained(model_name, device=device)
    texts = list(texts)
    lengths = model.tokenizer.encode(texts).lengths
    flops = model_flops(model, lengths)
    result = BenchResult(
        machine={"platform": platform.platform(), "processor": platform.processor(),
                 "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": device,
                 "gpu": torch.cuda.get_device_name() if device != "cpu" else None},
        corpus={"texts": len(texts), "tokens": int(lengths.sum()),
                "mean_tokens": float(lengths.mean()), "peer_batch_size": batch_size,
                "seqenc_batch_tokens": batch_tokens},
    )
    reference = model.encode(texts, batch_size=batch_size)
    for dtype in dtypes:
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        peer = SentenceTransformer(str(model.path), device=device).to(torch_dtype)
        peer.max_seq_length = model.max_seq_length

        def ours(dtype=dtype):
            return model.encode(texts, batch_size=batch_size, dtype=dtype,
                                batch_tokens=batch_tokens)

        def theirs(peer=peer):
            return peer.encode(texts, batch_size=batch_size, convert_to_numpy=True)

        got, expected = ours(), np.asarray(theirs(), dtype=np.float32)  # warm-up + agreement
        to_peer, to_fp32 = min_cosine(got, expected), min_cosine(got, reference)
        log(f"[{dtype}] min cosine seqenc vs sentence-transformers {to_peer:.6f}, "
            f"vs seqenc fp32 {to_fp32:.6f}")
        if to_fp32 < MIN_COSINE[dtype]:
            raise AssertionError(f"{dtype}: min cosine to fp32 {to_fp32} < {MIN_COSINE[dtype]}")
        if dtype == "float32" and to_peer < MIN_COSINE[dtype]:
            raise AssertionError(f"float32: min cosine to the peer {to_peer} < 0.99999")
        peak = gemm_gflops(torch_dtype, device=device)
        our_peak = peak if dtype == "float32" or native_bf16_matmul(device) else gemm_gflops(
            torch.float32, device=device)
        times = interleave({"seqenc": ours, "peer": theirs}, rounds)

        def summarise(seconds: list[float], peak: float) -> EngineResult:
            best = statistics.median(seconds)
            return EngineResult(len(texts) / best, float(lengths.sum()) / best, seconds,
                                flops / best / 1e9 / peak)

        mode = ModeResult(dtype, summarise(times["seqenc"], our_peak),
                          summarise(times["peer"], peak), 0.0, to_peer, to_fp32, peak, our_peak)
        mode.ratio = mode.seqenc.sentences_per_s / mode.peer.sentences_per_s
        result.modes.append(mode)
        log(f"[{dtype}] seqenc {mode.seqenc.sentences_per_s:.0f} sent/s "
            f"({mode.seqenc.tokens_per_s:.0f} tok/s, {mode.seqenc.peak_fraction:.0%} of "
            f"{our_peak:.0f} GFLOP/s GEMM) | sentence-transformers "
            f"{mode.peer.sentences_per_s:.0f} sent/s ({mode.peer.peak_fraction:.0%} of "
            f"{peak:.0f} GFLOP/s {dtype} GEMM) | ratio {mode.ratio:.2f}x")
        if sweep_lengths and dtype == "float32":
            result.sweep = length_sweep(model, peer, sweep_lengths, sweep_texts, batch_size, log)
    return result


def length_sweep(model, peer, lengths, n_texts, batch_size, log) -> list[dict]:
    """Texts of exactly L tokens ([CLS]/[SEP] included): how cost grows with length."""
    saved = model.max_seq_length
    limit = model.encoder.cfg.longest_sequence  # RoBERTa-style offsets use rows up front
    model.max_seq_length, peer.max_seq_length = limit, limit
    rows = []
    try:
        for L in lengths:
            if L > limit:
                continue
            texts = [" ".join(["word"] * (L - 2))] * n_texts
            assert int(model.tokenizer.encode(texts[:1]).lengths[0]) == L
            model.encode(texts[:batch_size])
            times = interleave(
                {"seqenc": lambda t=texts: model.encode(t, batch_size=batch_size),
                 "peer": lambda t=texts: peer.encode(t, batch_size=batch_size)}, 2)
            row = {"length": L} | {f"{k}_tokens_per_s": n_texts * L / min(v)
                                   for k, v in times.items()}
            rows.append(row)
            log(f"  length {L:4d}: seqenc {row['seqenc_tokens_per_s']:8.0f} tok/s, "
                f"sentence-transformers {row['peer_tokens_per_s']:8.0f} tok/s")
    finally:
        model.max_seq_length = saved
    return rows


def save(result: BenchResult, json_path: Path, png_path: Path | None = None) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(json_path, json.dumps(asdict(result), indent=2) + "\n")
    if png_path is None or not result.sweep:
        return
    fig = sweep_figure(result.sweep)
    with atomic.atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=110)


def sweep_figure(sweep: list[dict]):
    """Tokens/s against sequence length for both engines (a matplotlib Figure, no pyplot).

    The y-axis starts at 0, so the gap between the lines looks as big as it is."""
    require("matplotlib", "plotting the benchmark")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [r["length"] for r in sweep]
    ax.plot(xs, [r["seqenc_tokens_per_s"] for r in sweep], "o-", label="seqenc")
    ax.plot(xs, [r["peer_tokens_per_s"] for r in sweep], "s--", label="sentence-transformers")
    ax.set(xscale="log", xlabel="sequence length (tokens)", ylabel="tokens / s (fp32)",
           title="Throughput vs sequence length")
    ax.set_ylim(bottom=0)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xticks([], minor=True)  # the log axis's own minor labels overprint ours
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
