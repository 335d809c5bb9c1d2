"""Issue 17's attacks replayed against ``seqenc serve`` while normal clients use it.

Each phase runs for a fixed time: ``--clients`` normal clients post /embed (1-4 corpus texts,
one request at a time), a probe GETs /health every 100 ms, and one attack runs alongside
(none in the baseline). Per phase it reports the normal clients' p50/p99 and errors, /health's
p50 and worst latency, what the attack got back, and the server's RSS before and after (and
its peak). Last, it opens stalled connections and sends SIGTERM, and times the exit.

``--src`` runs the server from another source tree as well (e.g. a checkout from before the
fixes); the two servers then take each phase in turn, so both see the same machine load.
Everything is bounded: phases are ``--seconds`` long, attack loops stop with their phase.

    python benchmarks/serve_attack.py                          # this tree, 8 s per phase
    python benchmarks/serve_attack.py --src /tmp/old/src --out out/serve_attack.json
    python benchmarks/serve_attack.py --phases "{},[]"     # the baseline and the two bombs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import seqenc  # first: caps OpenMP's spin before torch loads (ruff.toml)  # noqa: F401

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".." / "shared" / "data" / "bench" / "corpus.txt"
JSON = {"Content-Type": "application/json"}
HEAD = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


class Server:
    """``python -m seqenc.server`` from ``src`` (None: the installed seqenc) on a free port."""

    def __init__(self, name: str, src: str | None, threads: int):
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix="serve-attack-", suffix=".log")[1])
        env = dict(os.environ)
        if src:
            env["PYTHONPATH"] = src
        self._file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seqenc.server", "--host", "127.0.0.1", "--port", "0",
             "--threads", str(threads), "--log-level", "warning"],
            stdout=self._file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 180
        while not (found := re.search(r"listening on (http://127\.0\.0\.1:(\d+))",
                                      self.log.read_text(errors="replace"))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{name} server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.url, self.port = found.group(1), int(found.group(2))
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{name} server not healthy:\n{self.log.read_text()}")
            time.sleep(0.1)

    def memory_mib(self) -> dict[str, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        memory = {key: round(int(re.search(rf"{key}:\s+(\d+)", status).group(1)) / 1024, 1)
                  for key in ("VmRSS", "VmHWM")}
        memory["helpers"] = self.helpers_rss_mib()
        return memory

    def helpers_rss_mib(self) -> float:
        """RSS of the server's child processes (the JSON helper), counted apart."""
        total = 0
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            found = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(found.group(1)) if found else 0
        return round(total / 1024, 1)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def traceback_lines(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._file.close()
        self.log.unlink(missing_ok=True)


def ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(values) * 1000, q)), 1) if values else None


# ---- the attacks: each loops until ``stop`` is set ------------------------------------------


async def post_loop(url: str, stop: asyncio.Event, route: str, body: bytes, workers: int,
                    got: Counter) -> None:
    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await client.post(route, content=body, headers=JSON)
                got[str(r.status_code)] += 1
            except httpx.HTTPError as e:
                got[type(e).__name__] += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))


async def hold_connections(port: int, stop: asyncio.Event, n: int, opening: bytes,
                           trickle: bytes | None, got: Counter) -> None:
    """``n`` connections that send ``opening`` and then ``trickle`` each second (or nothing);
    one the server closes is counted and opened again."""

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as e:
                got[f"connect {type(e).__name__}"] += 1
                await asyncio.sleep(0.1)
                continue
            got["opened"] += 1
            try:
                writer.write(opening)
                await writer.drain()
                while not stop.is_set():
                    try:
                        data = await asyncio.wait_for(reader.read(1024), 1.0)
                    except TimeoutError:
                        if trickle:
                            writer.write(trickle)
                            await writer.drain()
                        continue
                    got["answered 503" if data.startswith(b"HTTP/1.1 503") else
                        "answered 429" if data.startswith(b"HTTP/1.1 429") else
                        "closed by server" if not data else "answered other"] += 1
                    break
            except OSError:
                got["reset by server"] += 1
            finally:
                writer.close()
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one() for _ in range(n)))


def attacks(server: Server) -> dict[str, Callable[[asyncio.Event, Counter], Awaitable]]:
    url, port = server.url, server.port
    bomb = b'{"input":[' + b",".join([b"{}"] * 660_000) + b"]}"  # 1.98 MB
    list_bomb = b'{"input":[' + b",".join([b"[]"] * 660_000) + b"]}"  # 1.98 MB
    amplifier = json.dumps({"inputs": ["a " * 31_000] * 32}).encode()  # 1.98 MB
    body = b" " * 1_900_000
    return {
        "lone surrogates (4 clients)": lambda stop, got: post_loop(
            url, stop, "/embed", b'{"inputs": ["ok", "a\\ud800b", "c\xed\xa0\x80d"]}', 4, got),
        "2 MB of {} to /v1/embeddings (1 client)": lambda stop, got: post_loop(
            url, stop, "/v1/embeddings", bomb, 1, got),
        "2 MB of [] to /v1/embeddings (1 client)": lambda stop, got: post_loop(
            url, stop, "/v1/embeddings", list_bomb, 1, got),
        "2 MB /tokenize amplifier (6 clients)": lambda stop, got: post_loop(
            url, stop, "/tokenize", amplifier, 6, got),
        "100 bodies stalled at 1.9 of 2 MB": lambda stop, got: hold_connections(
            port, stop, 100, HEAD + b"Content-Length: 2000000\r\n\r\n" + body, None, got),
        "300 slowloris heads (a byte a second)": lambda stop, got: hold_connections(
            port, stop, 300, b"POST /embed HTTP/1.1\r\n", b"X", got),
        "1200 idle connections": lambda stop, got: hold_connections(
            port, stop, 1200, b"", None, got),
    }


# ---- one phase -----------------------------------------------------------------------------


async def normal_clients(url: str, stop: asyncio.Event, texts: list[str], n: int,
                         seed: int) -> tuple[list[float], Counter]:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: Counter = Counter()

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            batch = rng.sample(texts, rng.randint(1, 4))
            started = time.perf_counter()
            try:
                r = await client.post("/embed", json={"inputs": batch, "truncate": True})
                if r.status_code == 200 and len(r.json()) == len(batch):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(r.status_code)] += 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(n)))
    return latencies, errors


async def health_probe(url: str, stop: asyncio.Event) -> tuple[list[float], int]:
    latencies, failures = [], 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = (await client.get("/health")).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            failures += not ok
            await asyncio.sleep(0.1)
    return latencies, failures


async def run_phase(server: Server, attack, seconds: float, texts: list[str], clients: int,
                    seed: int) -> dict:
    memory_before = server.memory_mib()
    load_before = os.getloadavg()[0]
    server.reset_peak()
    stop = asyncio.Event()
    got: Counter = Counter()
    normal = asyncio.create_task(normal_clients(server.url, stop, texts, clients, seed))
    health = asyncio.create_task(health_probe(server.url, stop))
    attacker = asyncio.create_task(attack(stop, got)) if attack else None
    await asyncio.sleep(seconds)
    stop.set()
    started = time.perf_counter()
    done = [normal, health] + ([attacker] if attacker else [])
    _, pending = await asyncio.wait(done, timeout=90)
    for task in pending:
        task.cancel()
    latencies, errors = normal.result() if normal.done() else ([], Counter({"hung": 1}))
    health_latencies, health_failures = health.result() if health.done() else ([], -1)
    await asyncio.sleep(1.0)  # let the server finish what the phase left
    memory_after = server.memory_mib()
    return {
        "normal": {"requests": len(latencies), "p50_ms": ms(latencies, 50),
                   "p99_ms": ms(latencies, 99), "errors": dict(errors)},
        "health": {"probes": len(health_latencies), "p50_ms": ms(health_latencies, 50),
                   "max_ms": ms(health_latencies, 100), "failures": health_failures},
        "attack_got": dict(got),
        "drain_s": round(time.perf_counter() - started, 1),
        "rss_mib_before": memory_before["VmRSS"], "rss_mib_after": memory_after["VmRSS"],
        "rss_mib_peak": memory_after["VmHWM"],
        "helper_rss_mib_after": memory_after["helpers"],
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


async def shutdown_with_stalls(server: Server) -> dict:
    """Ten connections stalled mid-body, ten idle, then SIGTERM: seconds to exit."""
    writers = []
    for opening in [HEAD + b"Content-Length: 100\r\n\r\n{\"inp"] * 10 + [b""] * 10:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(opening)
        await writer.drain()
        writers.append(writer)
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(server.proc.wait, 120)
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.perf_counter() - started
    for writer in writers:
        writer.close()
    return {"exit_code": code, "seconds": round(seconds, 1) if code is not None else ">120",
            "tracebacks_in_log": server.traceback_lines()}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    p.add_argument("--clients", type=int, default=4, help="normal clients")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--src", default=None,
                   help="also run a server from this source tree (e.g. before the fixes)")
    p.add_argument("--phases", default=None,
                   help="comma-separated words; run only the attacks whose names hold one "
                        "(the baseline always runs)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "serve_attack.json")
    args = p.parse_args()
    texts = ([line for line in CORPUS.read_text().splitlines() if line.strip()][:2000]
             if CORPUS.exists() else ["A plane is taking off.", "A cat sleeps."] * 50)
    servers = [Server("this tree", None, args.threads)]
    if args.src:
        try:
            servers.append(Server("--src", args.src, args.threads))
        except BaseException:
            servers[0].close()
            raise
    import torch

    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                 "load_average_at_start": os.getloadavg(),
                                 "note": "shared with other work; figures vary run to run"},
                     "settings": vars(args) | {"out": str(args.out)}, "phases": {}}
    try:
        plans = {server.name: attacks(server) for server in servers}
        wanted = [w.strip() for w in args.phases.split(",")] if args.phases else None
        names = [n for n in plans[servers[0].name]
                 if wanted is None or any(w in n for w in wanted)]
        for name in ["baseline (no attack)", *names]:
            results["phases"][name] = {}
            for server in servers:
                attack = plans[server.name].get(name)
                row = await run_phase(server, attack, args.seconds, texts, args.clients, 0)
                results["phases"][name][server.name] = row
                print(f"{name:42s} {server.name:12s} normal p50/p99 "
                      f"{row['normal']['p50_ms']}/{row['normal']['p99_ms']} ms, "
                      f"errors {row['normal']['errors']}, /health max "
                      f"{row['health']['max_ms']} ms, RSS {row['rss_mib_before']} -> "
                      f"{row['rss_mib_after']} MiB (peak {row['rss_mib_peak']}; helper "
                      f"{row['helper_rss_mib_after']}), attack got {row['attack_got']}, "
                      f"load {row['load_average_1min']}", flush=True)
        results["shutdown"] = {}
        for server in servers:
            results["shutdown"][server.name] = await shutdown_with_stalls(server)
            print(f"SIGTERM with 20 stalled connections, {server.name}: "
                  f"{results['shutdown'][server.name]}", flush=True)
    finally:
        for server in servers:
            server.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
