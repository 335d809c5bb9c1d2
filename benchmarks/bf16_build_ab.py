"""Two builds of the C kernels in one process, interleaved: the bf16 layer's steps (1 thread,
CPU time, bf16_layer_profile's steps on its p50 pass) and encode (2 threads, wall clock).

The old build is another commit's extension, loaded beside this one (harness.load_kernels: dlopen
keys on the path, so no renaming); each arm swaps it into ``seqenc.nn.kernels._kernels``, which
every bf16 kernel call reads, and the Python code picks each build's path by what it has
(``kernels._has``). Rounds alternate which build runs first; medians and pairwise ratios.

    # the old build: commit C's setup.py build in a directory of its own
    git archive C setup.py pyproject.toml README.md src/seqenc/csrc | tar -x -C /tmp/old
    (cd /tmp/old && python setup.py -q build_ext --inplace)
    cd benchmarks; python bf16_build_ab.py /tmp/old/src/seqenc/_kernels*.so --json F
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqenc.allocator import tune_memory
from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.precision import bf16_encoder
from seqenc.threads import set_threads

import torch
from bf16_layer_profile import passes, steps
from harness import load_kernels, read_texts


def interleaved(builds: dict, run, rounds: int) -> dict[str, list[float]]:
    """run(build) -> seconds, rounds + 1 times per build (the first dropped), order alternating."""
    times: dict[str, list[float]] = {b: [] for b in builds}
    for r in range(rounds + 1):
        for b in (list(builds) if r % 2 else list(builds)[::-1]):
            kernels._kernels = builds[b]
            dt = run()
            if r:
                times[b].append(dt)
    kernels._kernels = builds["new"]
    return times


def summary(times: dict[str, list[float]], scale: float) -> dict:
    old, new = times["old"], times["new"]
    return {"old": statistics.median(old) * scale, "new": statistics.median(new) * scale,
            "pairwise_old_over_new": statistics.median(
                a / b for a, b in zip(old, new, strict=True)),
            "old_all": old, "new_all": new}


def layer_steps(builds: dict, model, keys: list[str], isas: list[str], rounds: int) -> dict:
    set_threads(1)
    layer = bf16_encoder(model.encoder).layers[0]
    lengths = passes(model, [50])["p50"]
    result = {}
    for isa in isas:
        for key, f in steps(layer, lengths, isa).items():
            if key not in keys:
                continue

            def run(f=f) -> float:
                t = time.thread_time()
                f()
                return time.thread_time() - t

            result[f"{isa} {key}"] = s = summary(interleaved(builds, run, rounds), 1e3)
            print(f"{isa:10s} {key:10s} old {s['old']:7.3f} new {s['new']:7.3f} ms  pairwise "
                  f"{s['pairwise_old_over_new']:.3f}x", flush=True)
    return result


def encode(builds: dict, model, n_texts: int, isas: list[str], rounds: int) -> dict:
    set_threads(2)
    texts = read_texts(n_texts)
    ref = torch.as_tensor(model.encode(texts, dtype="float32"))
    result = {}
    for isa in isas:
        kernels.ISA = isa
        vectors: dict = {}

        def run(vectors: dict = vectors) -> float:
            t = time.perf_counter()
            vectors[kernels._kernels] = torch.as_tensor(model.encode(texts, dtype="bfloat16"))
            return time.perf_counter() - t

        s = summary(interleaved(builds, run, rounds), 1.0)
        old, new = (vectors[builds[b]] for b in ("old", "new"))
        result[isa] = {**s, "old_sent_s": len(texts) / s["old"],
                       "new_sent_s": len(texts) / s["new"],
                       "identical_vectors": torch.equal(old, new),
                       "min_cos_fp32": torch.cosine_similarity(new, ref).min().item()}
        print(f"encode {isa}: old {result[isa]['old_sent_s']:.1f} new "
              f"{result[isa]['new_sent_s']:.1f} sent/s, pairwise (speed) "
              f"{s['pairwise_old_over_new']:.3f}x, identical {result[isa]['identical_vectors']}",
              flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old_so")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", nargs="*", default=["up+GELU", "up alone", "layer"])
    parser.add_argument("--isas", nargs="+", default=["avx512bf16", "amx"])
    parser.add_argument("--encode-texts", type=int, default=0, help="0: no encode A/B")
    parser.add_argument("--encode-rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tune_memory()
    builds = {"old": load_kernels(Path(args.old_so)), "new": kernels._kernels}
    model = SentenceEncoder.from_pretrained()
    result = {"loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}
    if args.steps:
        result["steps"] = layer_steps(builds, model, args.steps, args.isas, args.rounds)
    if args.encode_texts:
        result["encode"] = encode(builds, model, args.encode_texts, args.isas, args.encode_rounds)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
