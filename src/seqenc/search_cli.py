"""`seqenc rerank` and `seqenc encode --sparse`: the reranking and SPLADE halves of the CLI.

Same inputs and error handling as `seqenc encode` (seqenc.io readers, exit codes, atomic
outputs); click and the standard library only at import time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from seqenc.choices import DEVICES, DTYPES, INPUT_FORMATS, ON_ERROR
from seqenc.encode_cli import device_option
from seqenc.exits import EXIT_CODES, ModelLoadError, output_exit_codes, sigterm_as_interrupt

RERANK_OUTPUTS = (".jsonl", ".csv")
SPARSE_OUTPUTS = (".jsonl", ".parquet")


def load_cross_encoder(name: str, device: str = "cpu", max_length: int | None = None):
    try:
        from seqenc.crossencoder import CrossEncoder

        return CrossEncoder.from_pretrained(name, device=device, max_length=max_length)
    except Exception as e:
        raise ModelLoadError(f"cannot load reranker {name!r}: {e}") from e


def load_sparse_encoder(name: str | None, device: str = "cpu"):
    try:
        from seqenc.sparse import SparseEncoder

        if name is None:
            raise ValueError("--sparse needs --model: a *ForMaskedLM (SPLADE) directory")
        return SparseEncoder.from_pretrained(name, device=device)
    except Exception as e:
        raise ModelLoadError(f"cannot load sparse model {name!r}: {e}") from e


def _check_output(output: str | None, allowed: tuple[str, ...]) -> Path | None:
    if output is None:
        return None
    path = Path(output)
    if path.suffix.lower() not in allowed:
        raise click.BadParameter(f"must end in {' or '.join(allowed)}", param_hint="-o/--output")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _records(source: str, fmt: str | None, field: str, id_field: str | None, on_error: str):
    from seqenc.io import open_records

    return open_records(source, fmt, field=field, id_field=id_field, on_error=on_error,
                        warn=lambda m: click.echo(m, err=True))


# -- rerank ----------------------------------------------------------------------------------


@click.command("rerank", epilog=EXIT_CODES)
@click.argument("query")
@click.argument("source", metavar="INPUT")
@click.option("--model", "model_name", required=True, metavar="PATH",
              help="Cross-encoder directory (a *ForSequenceClassification checkpoint, or the "
                   "output of `seqenc train pairs`).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write .jsonl or .csv (atomically); default: JSON lines on stdout.")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Keep the best K documents [default: all].")
@click.option("--field", default="text", show_default=True, help="Text field/column.")
@click.option("--id-field", help="Field/column with record ids (default: line or row number).")
@click.option("--format", "fmt", type=click.Choice(INPUT_FORMATS),
              help="Input format (default: from the extension; stdin is txt).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-length", type=click.IntRange(min=4),
              help="Tokens per (query, document) pair; the longer side is cut first.")
@click.option("--no-truncate", is_flag=True,
              help="Treat pairs longer than the limit as bad input instead of cutting them.")
@click.option("--raw", is_flag=True, help="Raw logits instead of sigmoid scores.")
@click.option("--return-text", is_flag=True, help="Include each document's text.")
@click.option("--on-error", type=click.Choice(ON_ERROR), default="raise",
              show_default=True, help="Stop at the first bad record, or report and skip it.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Compute dtype; bfloat16 converts the model once (bf16 compute on CPUs with "
                   "bf16 instructions, bf16 weights with fp32 compute elsewhere); scores "
                   "stay float32.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="PyTorch intra-op threads [default: PyTorch's, one per core].")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True)
@output_exit_codes
def rerank_command(query, source, model_name, output, top_k, field, id_field, fmt, batch_size,
                   max_length, no_truncate, raw, return_text, on_error, dtype, threads,
                   device) -> None:
    """Score every document in INPUT against QUERY with a cross-encoder; best first.

    INPUT is read as by `seqenc encode` (txt, jsonl, csv, tsv, parquet or - for stdin). Each
    output row: rank, id, score (and text with --return-text). Pairs cut to fit the model
    are reported on stderr with the side that lost tokens (query, document or both).
    """
    out = _check_output(output, RERANK_OUTPUTS)
    with _records(source, fmt, field, id_field, on_error) as reader:
        records = list(reader)
        _set_threads(threads)
        model = load_cross_encoder(model_name, device_option(device), max_length)
        if model.num_labels != 1:
            raise click.UsageError(f"{model_name} has {model.num_labels} labels; reranking "
                                   "needs a one-label cross-encoder")
        from seqenc.pairs import PairTooLong

        pairs = [(query, r.text) for r in records]
        keep = list(range(len(records)))
        if no_truncate:  # each too-long pair is a bad record (raise or skip, per --on-error)
            keep = []
            for i, pair in enumerate(pairs):
                try:
                    model.tokenizer.encode([pair], truncate=False)
                    keep.append(i)
                except PairTooLong as e:
                    reader.reject(reader.bad_record(records[i], f"the (query, document) pair "
                                                    f"has {e.n_tokens} tokens, more than "
                                                    f"{e.max_length}"))
        scores, report = model.predict([pairs[i] for i in keep], batch_size, raw=raw,
                                       return_report=True, dtype=dtype) if keep else ([], None)
    ranked = sorted(zip(keep, scores, strict=True), key=lambda x: -x[1])[:top_k]
    rows = [{"rank": n, "id": records[i].id, "score": float(s),
             **({"text": records[i].text} if return_text else {})}
            for n, (i, s) in enumerate(ranked, start=1)]
    _write_rows(rows, out)
    if report is not None and report.truncated:
        sides = {"first": "query", "second": "document", "both": "both"}
        counts: dict[str, int] = {}
        for side in report.truncated.values():
            counts[sides[side]] = counts.get(sides[side], 0) + 1
        ids = ", ".join(str(records[keep[i]].id) for i in sorted(report.truncated)[:5])
        click.echo(f"warning: {len(report.truncated)} pairs were longer than "
                   f"{model.max_length} tokens and were cut (ids {ids}"
                   f"{', ...' if len(report.truncated) > 5 else ''}; cut side: "
                   + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                   + "); --no-truncate rejects them instead", err=True)
    if out is not None:
        click.echo(f"ranked {len(keep)} documents; wrote {len(rows)} rows to {out}", err=True)


def _write_rows(rows: list[dict[str, Any]], out: Path | None) -> None:
    if out is None:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    from seqenc.io import atomic_path

    with sigterm_as_interrupt(), atomic_path(out) as tmp, \
            open(tmp, "w", encoding="utf-8", newline="") as f:
        if out.suffix.lower() == ".csv":
            import csv

            fields = ["rank", "id", "score"] + (["text"] if rows and "text" in rows[0] else [])
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _set_threads(threads: int | None) -> None:
    from seqenc.threads import set_threads

    set_threads(threads)


# -- encode --sparse ---------------------------------------------------------------------------


def encode_sparse(source: str, output: str | None, model_name: str | None, field: str,
                  id_field: str | None, fmt: str | None, batch_size: int, chunk_size: int,
                  max_length: int | None, no_truncate: bool, on_error: str, device: str,
                  top_k: int | None, quiet: bool, skip_blank: bool = False,
                  dtype: str = "float32", threads: int | None = None) -> None:
    """The body of `seqenc encode --sparse`: SPLADE vectors, one row per record, written
    chunk by chunk into a temporary file that becomes OUTPUT only when all succeeded.

    jsonl rows: {"id", "indices": [...], "values": [...], "tokens": {...}}; parquet columns
    id, indices (list<int32>), values (list<float32>)."""
    if output is None:
        raise click.UsageError("--sparse needs -o/--output (.jsonl or .parquet)")
    out = _check_output(output, SPARSE_OUTPUTS)
    with _records(source, fmt, field, id_field, on_error) as reader:
        _set_threads(threads)
        model = load_sparse_encoder(model_name, device_option(device))
        model.modules_for(dtype)  # the bf16 copy, once, before the first chunk
        if max_length is not None:
            if max_length > model.max_seq_length:
                raise click.BadParameter(f"{max_length} is longer than the model's limit of "
                                         f"{model.max_seq_length} tokens",
                                         param_hint="--max-length")
            model.tokenizer.set_max_length(max_length)
        from seqenc.io import SparseWriter
        from seqenc.streaming import EncodeOptions, encode_sparse_stream

        opts = EncodeOptions(batch_size, chunk_size, dtype=dtype, truncate=not no_truncate,
                             skip_blank=skip_blank)
        with sigterm_as_interrupt(), SparseWriter(out, decode=model.decode) as sink:
            stats = encode_sparse_stream(reader, model, sink, opts, top_k)
    if stats.truncated:
        click.echo(f"warning: {stats.truncated} records were longer than {model.max_seq_length} "
                   "tokens and were truncated; --no-truncate rejects them instead", err=True)
    if not quiet:
        mean = stats.nonzero / stats.records if stats.records else 0.0
        click.echo(f"wrote {stats.records:,} sparse vectors ({mean:.1f} non-zero weights on "
                   f"average, vocabulary {model.vocab_size}) to {out}", err=True)


def register(group: click.Group) -> None:
    group.add_command(rerank_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(rerank_command())
