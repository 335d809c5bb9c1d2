"""Throughput benchmark: seqenc against its peers (sentence-transformers, ONNX Runtime,
OpenVINO: peers.py) on the same checkpoint, texts, batches and thread count, interleaved in one
process (A B C A B C ...) after warm-up. A fast wrong answer fails: the outputs must agree
before any speed is reported. Each engine's speed is also given as a fraction of the GEMM probe
and of the cores' FMA peak in the precision it computes in.

Modes (``dtypes``): float32 and bfloat16 race the peers in that precision; int8 (where
int8.check_int8 allows it: refused elsewhere, in one line, before anything loads) races
seqenc's fastest other precision on this CPU (bf16 where it has bf16 instructions, else fp32:
the issue's int8 target is >= 1.3x it) and OpenVINO's default, with its agreement to fp32 as
min and mean cosine (the bar for
offering int8: mean >= MIN_MEAN_COSINE).

The peers come from the ``bench`` extra (``pip install 'seqenc[bench]'``); without it
``run_benchmark`` says so in one line (seqenc.extras). Nothing here imports them at import time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import atomic
from .allocator import tune_memory
from .choices import DTYPES, ENCODE_DTYPES
from .extras import require
from .model import SentenceEncoder
from .precision import native_bf16_matmul
from .threads import openmp_waits, set_threads

MIN_COSINE = {"float32": 0.99999, "bfloat16": 0.999, "int8": 0.98}
MIN_MEAN_COSINE = {"int8": 0.995}  # the quality bar for offering int8
LABELS = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}


@dataclass
class EngineResult:
    name: str  # "seqenc fp32", "onnxruntime fp32", "openvino bf16 (default)", ...
    precision: str  # what it computes in
    sentences_per_s: float
    tokens_per_s: float
    seconds: list[float]
    model_gflops: float  # the encoder's FLOPs over the median time
    peak_fraction: float  # of the large-GEMM probe in its precision (MKL/oneDNN's practical peak)
    fma_fraction: float | None  # of the cores' FMA peak in its precision (None: not measured)
    min_cosine_to_fp32: float  # to seqenc fp32 (itself checked against sentence-transformers)
    seqenc_ratio: float  # seqenc's sentences/s over this engine's
    mean_cosine_to_fp32: float | None = None


@dataclass
class ModeResult:
    dtype: str
    engines: list[EngineResult]  # seqenc first
    gemm_gflops: dict[str, float]  # large-GEMM probe per precision
    fma_gflops: dict[str, float]  # FMA peak of the cores per precision (threads x one core)


@dataclass
class BenchResult:
    machine: dict
    corpus: dict
    modes: list[ModeResult] = field(default_factory=list)
    sweep: list[dict] = field(default_factory=list)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosines(a, b).min())


def gemm_gflops(dtype: torch.dtype, n: int = 2048, budget_s: float = 3.0,
                device: str = "cpu") -> float:
    """Large square GEMM throughput: the machine's practical matmul peak for ``dtype``
    (int8: GOP/s, int32 sums, on the int8 GEMM encode runs: ours, int8.GEMM, with the weights
    packed once, else torch._int_mm).

    Shrinks the matrix when one product is slow (bf16 without hardware support runs at well
    under 1 GFLOP/s), so the probe stays within about ``budget_s`` seconds.
    """
    if device != "cpu":
        n = max(n, 8192)  # a GPU needs a bigger product to reach its peak

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    ours = None
    if dtype == torch.int8 and device == "cpu":
        from . import int8, int8_gemm

        ours = int8.GEMM  # torch._int_mm is oneDNN's slow, saturating path without VNNI

    def operands(n: int):
        if dtype == torch.int8:
            tops = int8.LEVELS[ours] if ours else (127, 127)  # 7 bits for the avx2-u* kernels
            return (torch.randint(-top, top + 1, (n, n), dtype=torch.int8, device=device)
                    for top in tops)
        return (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    product = torch._int_mm if dtype == torch.int8 else torch.mm
    if ours:
        packed: dict[int, Callable] = {}  # b packed once, as an int8 layer's weights are

        def product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            if id(b) not in packed:
                packed.clear()
                packed[id(b)] = int8_gemm.int8_matmul(b, ours)
            return packed[id(b)](a)
    while True:
        a, b = operands(n)
        sync()
        start = time.perf_counter()
        product(a, b)  # warm-up, and a first timing
        sync()
        first = time.perf_counter() - start
        if first * 2 <= budget_s or n <= 256:
            break
        n //= 2
    repeats = max(1, min(20 if device != "cpu" else 5, int(budget_s / max(first, 1e-6))))
    start = time.perf_counter()
    for _ in range(repeats):
        product(a, b)
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


def fma_peaks(threads: int, seconds: float = 0.3) -> dict[str, float]:
    """The cores' arithmetic peak per precision, GFLOP/s (int8: GOP/s), from csrc/peak.c's
    probes: fp32 by the widest FMA the CPU has, bf16 by vdpbf16ps (AVX512-BF16; AMX's
    TDPBF16PS where the amx kernel set runs: seqenc's and oneDNN's bf16 GEMMs both use it), int8
    by vpdpbusd (AVX512-VNNI), or AMX's tdpbusd where int8 runs on AMX. Best of three short runs
    (a shared CPU only lowers a run). Empty without the kernels."""
    from .nn import kernels

    if not kernels.AVAILABLE:
        return {}
    import seqenc._kernels as k

    level = kernels.ISAS.index(kernels.AVAILABLE[-1])
    probes = {"fp32": 1 if level >= 1 else 0}
    if level >= 2:
        probes["bf16"] = 4 if kernels.ISA == "amx" else 2
    if level >= 1 and torch.cpu._is_vnni_supported():
        from . import int8

        probes["int8"] = 5 if int8.GEMM == "amx" else 3  # AMX's tdpbusd tiles, or vpdpbusd
    peaks = {}
    for name, kind in probes.items():
        iters = max(1000, int(k.peak(kind, 100_000, 1) * 1e9 * seconds / 2000))  # ~seconds
        peaks[name] = max(k.peak(kind, iters, threads) for _ in range(3))
    if "bf16" not in peaks:
        peaks["bf16"] = peaks["fp32"]  # no bf16 arithmetic: bf16 runs as fp32 (precision.py)
    return peaks


@contextlib.contextmanager
def busy_cores(n: int):
    """n background processes each spinning one core: the benchmark on a shared machine."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_benchmark(
    texts: Sequence[str],
    model_name: str | None = None,
    dtypes: Sequence[str] = DTYPES,  # any of ENCODE_DTYPES
    batch_size: int = 32,
    batch_tokens: int | None = None,
    rounds: int = 3,
    threads: int | None = None,
    sweep_lengths: Sequence[int] = (16, 32, 64, 128, 256, 512),
    sweep_texts: int = 64,
    log: Callable[[str], None] = print,
    device: str = "cpu",
    peers: Sequence[str] = ("sentence-transformers",),
    busy: int = 0,
) -> BenchResult:
    """seqenc against each peer of ``peers`` (see peers.py) per dtype, interleaved round by
    round (seqenc, peer 1, peer 2, ..., seqenc, ...) after a warm-up that checks agreement.
    ``device`` "cuda" runs seqenc and sentence-transformers on the GPU (the peak probe too).
    ``busy`` spins that many extra processes during the timed rounds (a shared CPU)."""
    from .peers import build_peers

    unknown = [d for d in dtypes if d not in ENCODE_DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype(s) {unknown}; choose from {', '.join(ENCODE_DTYPES)}")
    if "int8" in dtypes:
        if device != "cpu":
            raise ValueError(f"dtype int8 runs on the CPU only, not {device}")
        from .int8 import check_int8

        check_int8()  # before anything loads

    set_threads(threads or None)
    threads = torch.get_num_threads()
    tune_memory()  # process-wide: all engines run with the same allocator settings
    model = SentenceEncoder.from_pretrained(model_name, device=device)
    texts = list(texts)
    lengths = model.tokenizer.encode(texts).lengths
    flops = model_flops(model, lengths)
    from .nn import kernels

    result = BenchResult(
        machine={"platform": platform.platform(), "processor": platform.processor(),
                 "threads": threads, "torch": torch.__version__,
                 "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": device,
                 "kernels": kernels.ISA or "none", "busy_processes": busy,
                 "openmp_waits": openmp_waits(),
                 "gpu": torch.cuda.get_device_name() if device != "cpu" else None},
        corpus={"texts": len(texts), "tokens": int(lengths.sum()),
                "mean_tokens": float(lengths.mean()), "peer_batch_size": batch_size,
                "seqenc_batch_tokens": batch_tokens},
    )
    if openmp_waits().startswith("NOT"):  # torch came first: every engine spins longer
        log(f"OpenMP waits: {openmp_waits()}")
    reference = model.encode(texts, batch_size=batch_size)
    fma = fma_peaks(threads) if device == "cpu" else {}
    result.machine["fma_gflops"] = fma
    workdir = Path(tempfile.mkdtemp(prefix="seqenc-bench-"))
    sentence_transformers_fp32 = None
    native_bf16 = native_bf16_matmul(device)
    for dtype in dtypes:
        def ours(dtype=dtype):
            return model.encode(texts, batch_size=batch_size, dtype=dtype,
                                batch_tokens=batch_tokens)

        def computes_in(dtype: str) -> str:  # what seqenc computes in for ``dtype``
            return "fp32" if dtype == "bfloat16" and not native_bf16 else LABELS[dtype]

        engines = {f"seqenc {LABELS[dtype]}": (ours, computes_in(dtype))}
        if dtype == "int8":  # the precision int8 must beat: bf16 where native, else fp32
            other = "bfloat16" if native_bf16 else "float32"
            engines[f"seqenc {LABELS[other]}"] = (functools.partial(ours, other),
                                                  computes_in(other))
        # seqenc's encode keeps `threads` batches in flight on the CPU (threads.run_batches):
        # ORT and OpenVINO race both that way and one batch at a time (peers.py)
        streams = (1, threads) if threads > 1 and device == "cpu" else (1,)
        racing = build_peers(model, dtype, peers, batch_size, threads, device, workdir, streams)
        for peer in racing:
            engines[peer.name] = (lambda p=peer: p.encode(texts), peer.precision)
        agreement = {}
        for name, (run, _) in engines.items():  # warm-up + agreement
            got = run()
            agreement[name] = cosines(got, reference)
            if name == "sentence-transformers fp32":
                sentence_transformers_fp32 = min_cosine(reference, got)
            log(f"[{dtype}] {name}: cosine to seqenc fp32 min {agreement[name].min():.6f} "
                f"mean {agreement[name].mean():.6f}")
        ours_name = next(iter(engines))
        if agreement[ours_name].min() < MIN_COSINE[dtype]:
            raise AssertionError(f"{dtype}: min cosine to fp32 {agreement[ours_name].min()} < "
                                 f"{MIN_COSINE[dtype]}")
        if agreement[ours_name].mean() < MIN_MEAN_COSINE.get(dtype, 0.0):
            raise AssertionError(f"{dtype}: mean cosine to fp32 {agreement[ours_name].mean()} "
                                 f"< {MIN_MEAN_COSINE[dtype]}")
        if sentence_transformers_fp32 is not None and sentence_transformers_fp32 < 0.99999:
            raise AssertionError(f"float32: min cosine to sentence-transformers "
                                 f"{sentence_transformers_fp32} < 0.99999")
        gemm = {"fp32": gemm_gflops(torch.float32, device=device)}
        if dtype in ("bfloat16", "int8") and native_bf16:
            gemm["bf16"] = gemm_gflops(torch.bfloat16, device=device)
        if dtype == "int8":
            gemm["int8"] = gemm_gflops(torch.int8, device=device)
        with busy_cores(busy):
            times = interleave({name: run for name, (run, _) in engines.items()}, rounds)
        ours_s = statistics.median(times[ours_name])
        mode = ModeResult(dtype, [], gemm, {k: v for k, v in fma.items() if k in gemm})
        for name, (_, precision) in engines.items():
            best = statistics.median(times[name])
            achieved = flops / best / 1e9
            mode.engines.append(EngineResult(
                name, precision, len(texts) / best, float(lengths.sum()) / best, times[name],
                achieved, achieved / gemm.get(precision, gemm["fp32"]),
                achieved / fma[precision] if precision in fma else None,
                float(agreement[name].min()), best / ours_s, float(agreement[name].mean())))
            log(f"[{dtype}] {name:32s} {len(texts) / best:7.1f} sent/s  "
                f"{achieved:6.1f} GFLOP/s = {mode.engines[-1].peak_fraction:4.0%} of "
                f"{precision} GEMM probe"
                + (f", {mode.engines[-1].fma_fraction:4.0%} of FMA peak"
                   if mode.engines[-1].fma_fraction else "")
                + ("" if name == ours_name else f" | seqenc {best / ours_s:.2f}x"))
        result.modes.append(mode)
        if sweep_lengths and dtype == "float32" and "sentence-transformers" in peers:
            st_peer = next(p for p in racing if p.name.startswith("sentence-transformers"))
            result.sweep = length_sweep(model, st_peer.encode, sweep_lengths, sweep_texts,
                                        batch_size, log)
    return result


def length_sweep(model, peer, lengths, n_texts, batch_size, log) -> list[dict]:
    """Texts of exactly L tokens ([CLS]/[SEP] included): how cost grows with length. ``peer``
    encodes a list of texts (sentence-transformers', at the model's max_seq_length)."""
    saved = model.max_seq_length
    limit = min(model.encoder.cfg.longest_sequence, saved)  # the peer's max_seq_length
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
                 "peer": lambda t=texts: peer(t)}, 2)
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
