"""Start-up of a local Ray runtime on a starved machine: Ray's own ``ray.init`` against
seqenc's ``start_runtime`` (``ray start`` with fixed agent ports), each in a fresh process at
niceness 19 while N ``while True: pass`` burners run at normal priority.

Usage (take the quiet lock; a starved round takes minutes):
    flock /work/runs/quiet.lock python benchmarks/ray_start_load.py --burners 2 \
        --rounds 1 --out benchmarks/results/ray_start_load.json

Per round and path: import time, time to a started runtime (or to the failure), time to the
first task's result, how many tries, and the Ray processes left after stopping (must be none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.monotonic()
import ray
from seqenc.ray.procs import descendant_pids
from seqenc.ray.runtime import start_runtime, stop_runtime
t1 = time.monotonic()
out = {"path": sys.argv[1], "import_s": round(t1 - t0, 1), "tries": 1}
def warned(message):
    out["tries"] += 1
try:
    if sys.argv[1] == "ray.init":  # Ray's own start, as each try of the previous seqenc did
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    else:
        start_runtime(ray, None, num_cpus=2, warn=warned)
    out["start_s"] = round(time.monotonic() - t1, 1)
    assert ray.get(ray.remote(lambda: 1).remote()) == 1
    out["first_task_s"] = round(time.monotonic() - t1, 1)
    t2 = time.monotonic()
    ray.shutdown() if sys.argv[1] == "ray.init" else stop_runtime(ray)
    out["stop_s"] = round(time.monotonic() - t2, 1)
except Exception as e:  # noqa: BLE001 - the failure is the measurement
    out["failed_after_s"] = round(time.monotonic() - t1, 1)
    out["error"] = str(e)[:300]
    ray.shutdown()
out["left"] = sorted(descendant_pids())
print("RESULT " + json.dumps(out), flush=True)
"""


def ray_processes() -> list[str]:
    """Ray processes anywhere on the machine (a clean stop leaves none of this run's)."""
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    marks = ("raylet/raylet", "gcs_server", "dashboard/agent.py", "runtime_env/agent",
             "default_worker.py", "ray.scripts.scripts")
    return [line.strip()[:120] for line in ps.splitlines() if any(m in line for m in marks)]


def one(path: str, burners: int, timeout_s: float) -> dict:
    burn = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    try:
        time.sleep(1)
        start = time.monotonic()
        try:
            run = subprocess.run(["nice", "-n", "19", sys.executable, "-c", CHILD, path],
                                 capture_output=True, text=True, timeout=timeout_s)
            lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
            result = (json.loads(lines[-1][7:]) if lines
                      else {"path": path, "error": run.stderr[-300:]})
        except subprocess.TimeoutExpired:
            result = {"path": path, "error": f"no result in {timeout_s:g} s"}
        result["wall_s"] = round(time.monotonic() - start, 1)
        result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        for p in burn:
            p.kill()
            p.wait()
    time.sleep(2)
    result["ray_processes_after"] = ray_processes()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--paths", default="ray.init,seqenc")
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for r in range(args.rounds):
        for path in args.paths.split(","):
            results.append({"round": r, "burners": args.burners, **one(path, args.burners,
                                                                       args.timeout)})
            print(json.dumps(results[-1]), flush=True)
    record = {"cpu": os.uname().machine, "nproc": os.cpu_count(), "results": results}
    if args.out:
        existing = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
        existing["runs"].append(record)
        args.out.write_text(json.dumps(existing, indent=1) + "\n")


if __name__ == "__main__":
    main()
