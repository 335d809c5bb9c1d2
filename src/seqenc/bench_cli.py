"""``seqenc bench``: seqenc's throughput against its peers (seqenc/peers.py), from the command
line.

Click and the standard library only at import (``seqenc --help`` stays instant); the harness
(seqenc/bench.py: torch, the model, the peer from the ``bench`` extra) loads when it runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from seqenc.choices import DEVICES, DTYPES, ENCODE_DTYPES
from seqenc.exits import EXIT_CODES, EXIT_USAGE, exit_codes, fail, unexpected
from seqenc.extras import require

# In a checkout beside ../shared the recorded benchmark corpus; anywhere else (an installed
# package, a clone without ../shared) the sample corpus shipped in the package.
SHARED_BENCH_CORPUS = Path(__file__).resolve().parents[2].parent / "shared/data/bench/corpus.txt"
SAMPLE_CORPUS = Path(__file__).resolve().parent / "data" / "sample_corpus.txt"


def default_bench_corpus() -> Path:
    return SHARED_BENCH_CORPUS if SHARED_BENCH_CORPUS.is_file() else SAMPLE_CORPUS


@click.command("bench", epilog=EXIT_CODES,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("corpus", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="Model name or directory.")
@click.option("--texts", "n_texts", type=click.IntRange(min=2), default=None,
              help="Use the first N texts of the corpus.")
@click.option("--dtype", "dtypes", multiple=True, default=DTYPES,
              type=click.Choice(ENCODE_DTYPES), show_default=True,
              help="Modes to race (repeat the option). int8 (x86-64 CPUs) races seqenc "
                   "bf16 (fp32 without bf16 instructions) and OpenVINO's default.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help="Batch seqenc by this padded-token budget instead of --batch-size rows.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--no-sweep", is_flag=True, help="Skip the 16..512-token length sweep.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True, help="auto = cuda when a GPU is visible.")
@click.option("--peer", "peers", multiple=True, show_default=True,
              default=("sentence-transformers", "onnxruntime", "openvino"),
              type=click.Choice(["sentence-transformers", "onnxruntime", "openvino"]),
              help="Engines to race (all from the bench extra).")
@click.option("--busy", type=click.IntRange(min=0), default=0, show_default=True,
              help="Spin this many extra processes during the timed rounds (a shared CPU).")
@click.option("--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("benchmarks/results"), show_default=True)
@exit_codes(unexpected)
def bench_command(corpus, model_name, n_texts, dtypes, batch_size, batch_tokens, rounds, threads,
          no_sweep, device, peers, busy, out_dir):
    """Throughput against sentence-transformers, ONNX Runtime and OpenVINO (interleaved, same
    texts, batches and threads; agreement checked first).

    CORPUS is a text file, one text per line (default: ../shared/data/bench/corpus.txt in a
    checkout beside ../shared, else a 200-line sample shipped with seqenc). Needs the bench
    extra: pip install 'seqenc[bench]'.
    """
    require("sentence_transformers", "seqenc bench")  # before reading or loading anything
    if "int8" in dtypes:
        from seqenc.int8 import check_int8

        try:
            check_int8()
        except ValueError as e:
            fail(f"--dtype int8: {e}", EXIT_USAGE)
    from seqenc.bench import run_benchmark, save

    corpus = corpus or default_bench_corpus()
    click.echo(f"corpus: {corpus}", err=True)
    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[:n_texts] if n_texts else texts
    log = functools.partial(click.echo, err=True)
    from seqenc.encode_cli import device_option

    device = device_option(device)
    result = run_benchmark(texts, model_name, dtypes, batch_size, batch_tokens, rounds, threads,
                           sweep_lengths=() if no_sweep else (16, 32, 64, 128, 256, 512), log=log,
                           device=device, peers=peers, busy=busy)
    save(result, out_dir / "throughput.json", out_dir / "throughput.png")
    log(f"wrote {out_dir / 'throughput.json'}" + ("" if no_sweep else " and throughput.png"))
