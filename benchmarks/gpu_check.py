"""CUDA parity and throughput of seqenc against sentence-transformers on one GPU (issue 14,
item 5). Run through benchmarks/gpu_check.sh (which prepares the files and the budget); never
needed by CI.

    python benchmarks/gpu_check.py prepare DIR        # here: model (fp16 storage) + texts
    python benchmarks/gpu_check.py run DIR [--out F]  # on the GPU machine

``prepare`` writes DIR/model (the default all-MiniLM-L6-v2 with its weights stored as float16,
so that the folder fits the device tool's 64 MiB; both engines load the same files, so parity
is unaffected) and DIR/texts.txt (the first lines of the bench corpus). ``run`` checks, on
cuda: seqenc fp32 vs sentence-transformers fp32 (min cosine, max |difference| of the
normalised vectors), bf16 of each engine vs its fp32, then times both engines in each dtype,
same texts and batch size, in interleaved rounds (CUDA-synchronised), and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "bench" / "corpus.txt"


def prepare(out: Path, n_texts: int) -> None:
    import shutil

    from seqenc.model import default_model_path

    import torch
    from safetensors.torch import load_file, save_file

    source = default_model_path()
    model = out / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(source, model, ignore=shutil.ignore_patterns("model.safetensors", "*.md"))
    state = load_file(str(source / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              str(model / "model.safetensors"), metadata={"format": "pt"})
    corpus = CORPUS if CORPUS.exists() else ROOT / "examples" / "corpus.txt"
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    (out / "texts.txt").write_text("\n".join(lines[:n_texts]) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"prepared {out}: {len(lines[:n_texts])} texts, {size / 2**20:.1f} MiB; "
          f"torch {torch.__version__}")


def run(directory: Path, batch_size: int, rounds: int, out: Path | None, device: str = "cuda",
        limit: int | None = None) -> None:
    from seqenc.model import SentenceEncoder

    import numpy as np
    import sentence_transformers as st
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: nothing to check")
    texts = (directory / "texts.txt").read_text(encoding="utf-8").splitlines()[:limit]
    cuda = device == "cuda"

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    path = str(directory / "model")
    ours = SentenceEncoder.from_pretrained(path, device=device)
    peers = {"float32": st.SentenceTransformer(path, device=device).float().eval()}
    peers["bfloat16"] = st.SentenceTransformer(path, device=device).to(torch.bfloat16).eval()

    def encode_ours(dtype: str) -> np.ndarray:
        return ours.encode(texts, batch_size=batch_size, dtype=dtype)

    def encode_peer(dtype: str) -> np.ndarray:
        with torch.inference_mode():
            return peers[dtype].encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                       normalize_embeddings=True).astype(np.float32)

    def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    vectors = {(engine, dtype): fn(dtype) for dtype in ("float32", "bfloat16")
               for engine, fn in (("seqenc", encode_ours), ("sentence-transformers",
                                                            encode_peer))}
    fp32_ours, fp32_peer = vectors["seqenc", "float32"], vectors["sentence-transformers",
                                                                 "float32"]
    parity = {
        "fp32 seqenc vs sentence-transformers: min cosine":
            float(cosines(fp32_ours, fp32_peer).min()),
        "fp32 seqenc vs sentence-transformers: max |difference|":
            float(np.abs(fp32_ours - fp32_peer).max()),
        "bf16 seqenc vs seqenc fp32: min cosine":
            float(cosines(vectors["seqenc", "bfloat16"], fp32_ours).min()),
        "bf16 sentence-transformers vs its fp32: min cosine":
            float(cosines(vectors["sentence-transformers", "bfloat16"], fp32_peer).min()),
        "bf16 seqenc vs sentence-transformers bf16: min cosine":
            float(cosines(vectors["seqenc", "bfloat16"],
                          vectors["sentence-transformers", "bfloat16"]).min()),
    }
    for name, value in parity.items():
        print(f"{name}: {value:.7f}", flush=True)

    runs = {(engine, dtype): (lambda fn=fn, dtype=dtype: fn(dtype))
            for dtype in ("float32", "bfloat16")
            for engine, fn in (("seqenc", encode_ours), ("sentence-transformers", encode_peer))}
    times: dict = {key: [] for key in runs}
    for _ in range(rounds):  # interleaved: every engine and dtype once per round
        for key, fn in runs.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[key].append(time.perf_counter() - start)
    throughput = {}
    for (engine, dtype), ts in times.items():
        rate = len(texts) / statistics.median(ts)
        throughput[f"{engine} {dtype}"] = {"sentences_per_s": rate, "seconds": ts}
    for dtype in ("float32", "bfloat16"):
        ratio = (throughput[f"seqenc {dtype}"]["sentences_per_s"]
                 / throughput[f"sentence-transformers {dtype}"]["sentences_per_s"])
        throughput[f"seqenc vs sentence-transformers, {dtype}"] = ratio
        print(f"{dtype}: seqenc {throughput[f'seqenc {dtype}']['sentences_per_s']:.0f} "
              f"sent/s, sentence-transformers "
              f"{throughput[f'sentence-transformers {dtype}']['sentences_per_s']:.0f}, "
              f"ratio {ratio:.2f}x", flush=True)
    result = {"gpu": torch.cuda.get_device_name() if cuda else None, "device": device,
              "torch": torch.__version__,
              "sentence_transformers": st.__version__, "texts": len(texts),
              "batch_size": batch_size, "rounds": rounds, "parity": parity,
              "throughput": throughput}
    if out:
        out.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "run"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--texts", type=int, default=5000, help="prepare: lines to take")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    parser.add_argument("--limit", type=int, help="run: the first N texts only (dry runs)")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.directory, args.texts)
    else:
        run(args.directory, args.batch_size, args.rounds, args.out, args.device, args.limit)


if __name__ == "__main__":
    main()
