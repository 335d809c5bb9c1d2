"""Loopback load test of ``seqenc serve`` against offline ``SentenceEncoder.encode``.

Starts the server on 127.0.0.1 (a free port), then for each concurrency level runs a fixed
number of requests, each 1-16 texts drawn from ../shared/data/bench/corpus.txt, from that many
asyncio + httpx clients; then encodes the same texts offline in this process. Reports per
level throughput (texts/s), p50/p95/p99 latency, errors and padding, the single short request
latency, and the ratio to offline throughput, both per wall-clock second and per CPU second
of the server process (the latter holds still on a machine shared with other work); writes it
all as JSON. Stops by itself.

Targets: 32 clients >= 80% of offline throughput with zero errors; a single short request
p50 <= 25 ms. The client shares the machine's cores with the server: on a 2-core machine that
costs the server some throughput, so the ratio is a lower bound.

    python benchmarks/serve_load.py                        # levels 1, 8, 32, 128
    python benchmarks/serve_load.py --requests 48 --levels 1,32 --out out/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".." / "shared" / "data" / "bench" / "corpus.txt"
SHORT_TEXT = "A plane is taking off."
STARTUP_TIMEOUT = 180.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,8,32,128", help="concurrent clients per level")
    p.add_argument("--requests", type=int, default=96,
                   help="requests per level (at least 2 per client)")
    p.add_argument("--max-texts", type=int, default=16, help="texts per request: 1..this")
    p.add_argument("--short-requests", type=int, default=60,
                   help="sequential one-short-text requests for the latency figure")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads, for the server and the offline run alike "
                        "(default: torch's, one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "serve_load.json")
    return p.parse_args()


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    ms = np.array(latencies) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}


class Server:
    """``python -m seqenc.server`` on 127.0.0.1, port chosen by the server."""

    def __init__(self, *args: str):
        self.log = Path(tempfile.mkstemp(prefix="serve-load-", suffix=".log")[1])
        self._file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seqenc.server", "--host", "127.0.0.1", "--port", "0",
             "--log-level", "warning", *args],
            stdout=self._file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        self.url = None
        while self.url is None:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if found:
                self.url = found.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"server did not start:\n{self.log.read_text()}")
            else:
                time.sleep(0.05)
        with httpx.Client(base_url=self.url) as c:
            while True:
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"server not healthy:\n{self.log.read_text()}")
                time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux): throughput per CPU second does not
        depend on what else the machine is running, wall-clock throughput does."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics").text
        wanted = ("seqenc_tokens_total", "seqenc_batch_tokens_sum", "seqenc_batch_size_sum",
                  "seqenc_batch_size_count")
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                values[name] = float(value)
        return values

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: drain and exit 0
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._file.close()
        self.log.unlink(missing_ok=True)
        return code


async def run_level(url: str, requests: list[list[str]], clients: int) -> dict:
    """``clients`` workers share the fixed list of requests; each waits for its answer before
    sending the next, as a synchronous client would."""
    todo = iter(enumerate(requests))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    texts_done = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal texts_done
        for _, texts in todo:
            started = time.perf_counter()
            try:
                r = await client.post("/embed", json={"inputs": texts, "truncate": True})
                ok = r.status_code == 200 and len(r.json()) == len(texts)
                key = "ok" if ok else str(r.status_code)
            except httpx.HTTPError as e:
                key = type(e).__name__
            if key == "ok":
                latencies.append(time.perf_counter() - started)
                texts_done += len(texts)
            else:
                errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(requests),
        "texts": texts_done,
        "seconds": round(seconds, 3),
        "texts_per_s": round(texts_done / seconds, 1),
        **percentiles(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


async def short_latency(url: str, n: int) -> dict:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            r = await client.post("/embed", json={"inputs": SHORT_TEXT})
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)
    return {"requests": n, **percentiles(latencies)}


def offline_throughput(texts: list[str], dtype: str, threads: int | None) -> dict:
    from seqenc.model import SentenceEncoder

    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    model = SentenceEncoder.from_pretrained(None)
    model.encode(texts[:64], dtype=dtype)  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=32, dtype=dtype)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"texts": len(texts), "seconds": round(seconds, 3),
            "texts_per_s": round(len(texts) / seconds, 1), "cpu_s": round(cpu, 2),
            "texts_per_cpu_s": round(len(texts) / cpu, 1)}


def main() -> None:
    args = parse_args()
    if not CORPUS.exists():
        print(f"skipped: no benchmark corpus at {CORPUS} (shared/data/bench/corpus.txt)")
        return
    corpus = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
    levels = [int(x) for x in args.levels.split(",")]
    rng = random.Random(args.seed)

    def make_requests(n: int) -> list[list[str]]:
        return [rng.sample(corpus, rng.randint(1, args.max_texts)) for _ in range(n)]

    server_args = ["--dtype", args.dtype, "--max-concurrent-requests",
                   str(max(512, 2 * max(levels)))]
    if args.threads is not None:
        server_args += ["--threads", str(args.threads)]
    server = Server(*server_args)
    results: dict = {"machine": {"platform": platform.platform(),
                                 "python": platform.python_version(),
                                 "cpus": os.cpu_count()},
                     "dtype": args.dtype, "threads": args.threads, "levels": []}
    try:
        asyncio.run(run_level(server.url, make_requests(8), 4))  # warm-up, not reported
        results["short_request"] = asyncio.run(short_latency(server.url, args.short_requests))
        print(f"single short request: p50 {results['short_request']['p50_ms']} ms, "
              f"p95 {results['short_request']['p95_ms']} ms")
        sent: dict[int, list[list[str]]] = {}
        for clients in levels:
            sent[clients] = make_requests(max(args.requests, 2 * clients))
            before, cpu_before = server.metrics(), server.cpu_seconds()
            level = asyncio.run(run_level(server.url, sent[clients], clients))
            after, cpu_after = server.metrics(), server.cpu_seconds()
            if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
                level["server_cpu_s"] = round(cpu_after - cpu_before, 2)
                level["texts_per_cpu_s"] = round(level["texts"] / (cpu_after - cpu_before), 1)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            if delta.get("seqenc_batch_size_count"):
                level["mean_rows_per_pass"] = round(
                    delta["seqenc_batch_size_sum"] / delta["seqenc_batch_size_count"], 1)
                level["padded_over_real_tokens"] = round(
                    delta["seqenc_batch_tokens_sum"] / delta["seqenc_tokens_total"], 3)
            results["levels"].append(level)
            print(f"{clients:4d} clients: {level['texts_per_s']:8.1f} texts/s "
                  f"({level.get('texts_per_cpu_s')}/CPU-s)  "
                  f"p50 {level['p50_ms']:8.1f} ms  p95 {level['p95_ms']:8.1f} ms  "
                  f"p99 {level['p99_ms']:8.1f} ms  errors {level['errors']}  "
                  f"rows/pass {level.get('mean_rows_per_pass')}  "
                  f"padding x{level.get('padded_over_real_tokens')}")
    finally:
        results["server_exit_code"] = server.stop()
    reference = sent.get(32) or sent[levels[-1]]
    texts = [t for request in reference for t in request]
    results["offline"] = offline_throughput(texts, args.dtype, args.threads)
    print(f"offline SentenceEncoder.encode: {results['offline']['texts_per_s']} texts/s, "
          f"{results['offline']['texts_per_cpu_s']} texts/CPU-s ({len(texts)} texts)")
    for level in results["levels"]:
        level["ratio_to_offline"] = round(level["texts_per_s"]
                                          / results["offline"]["texts_per_s"], 3)
        if "texts_per_cpu_s" in level:
            level["cpu_ratio_to_offline"] = round(
                level["texts_per_cpu_s"] / results["offline"]["texts_per_cpu_s"], 3)
    at32 = next((lv for lv in results["levels"] if lv["clients"] == 32), None)
    if at32 is not None:
        results["targets"] = {
            "32_clients_ratio": at32["ratio_to_offline"],
            "32_clients_cpu_ratio": at32.get("cpu_ratio_to_offline"),
            "32_clients_ratio_ok": at32["ratio_to_offline"] >= 0.8 and at32["errors"] == 0,
            "short_p50_ms": results["short_request"]["p50_ms"],
            "short_p50_ok": results["short_request"]["p50_ms"] <= 25,
        }
        print(f"32 clients / offline = {at32['ratio_to_offline']:.2f} wall-clock, "
              f"{at32.get('cpu_ratio_to_offline')} per CPU second (target >= 0.80); "
              f"server exit code {results['server_exit_code']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
