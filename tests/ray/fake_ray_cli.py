"""A stand-in for ``ray start --head --block`` with Ray 2.60's raylet start-up rule.

It starts a "raylet" child that does what node_manager.cc's WaitForDashboardAgentPorts does:
for each agent port it was given 0 for (``ray start`` passes 0 where it was not named), and
always for the agent's HTTP port (services.py does not pass that one to the raylet), it waits
for the port file in the session directory and dies with Ray's fatal line if the file does
not come. No agent runs here, so only a caller that named the other ports and wrote those
files gets a node; the ports it registered with go to ``registered`` in the session. Then it
prints what ``ray start`` prints and blocks until SIGTERM, which stops the raylet.

Environment: FAKE_RAY_FAIL=N makes the first N starts (counted in FAKE_RAY_COUNT, a file)
fail as they still can on a starved machine (the raylet does not register within ``ray
start``'s 30 s); FAKE_RAY_WAIT_S is the raylet's window for port files (Ray's: 15 s).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

RAYLET = r"""
import os, re, sys, time
args = dict(re.match(r"--([^=]+)=(.*)", a).groups() for a in sys.argv[1:])
session, node = args["session_dir"], args["node_id"]
def fatal(name):
    with open(os.path.join(session, "logs", "raylet.err"), "w") as f:
        f.write("[2026-12-03 06:52:41,503 C 1 1] (raylet) node_manager.cc:3576:  An unexpected "
                "system state has occurred. Check failed: statussetor3576.has_value() Timed out "
                f"waiting for file {session}/{name}_{node}\n")
    sys.exit(1)
if os.environ.get("FAKE_RAY_STARVED"):  # too slow to register in ray start's 30 s
    time.sleep(600)
ports = {}
for flag, name in (("metrics-agent-port", "metrics_agent_port"),
                   ("metrics_export_port", "metrics_export_port"),
                   ("runtime_env_agent_port", "runtime_env_agent_port"),
                   ("dashboard_agent_listen_port", "dashboard_agent_listen_port")):
    if int(args.get(flag, "0")) != 0:
        ports[name] = int(args[flag])
        continue
    path = os.path.join(session, f"{name}_{node}")
    deadline = time.monotonic() + float(os.environ["FAKE_RAY_WAIT_S"])
    while deadline <= time.monotonic() or not os.path.exists(path):  # a 0 s window: none
        if time.monotonic() > deadline:
            fatal(name)
        time.sleep(0.05)
    ports[name] = int(open(path).read())
with open(os.path.join(session, "registered"), "w") as f:
    f.write(repr(ports))
time.sleep(600)
"""


def main() -> None:
    opts = dict(re.match(r"--([^=]+)=?(.*)", a).groups() for a in sys.argv[2:])
    temp = Path(opts["temp-dir"])
    count_file = Path(os.environ["FAKE_RAY_COUNT"])
    count = int(count_file.read_text()) + 1 if count_file.exists() else 1
    count_file.write_text(str(count))
    session = temp / f"session_2026-12-03_00-00-00_{os.getpid()}"
    (session / "logs").mkdir(parents=True)
    node = f"{os.getpid():056x}"
    env = dict(os.environ)
    if count <= int(os.environ.get("FAKE_RAY_FAIL", "0")):
        env["FAKE_RAY_STARVED"] = "1"
    raylet = subprocess.Popen(
        [str(temp / "raylet"), "-c", RAYLET, f"--node_id={node}", f"--session_dir={session}",
         f"--metrics-agent-port={opts.get('dashboard-agent-grpc-port', 0)}",
         f"--metrics_export_port={opts.get('metrics-export-port', 0)}",
         f"--runtime_env_agent_port={opts['runtime-env-agent-port']}"],
        executable=sys.executable, env=env,
    )
    (count_file.parent / f"start-{count}.json").write_text(json.dumps({
        "argv": sys.argv[1:], "pids": [os.getpid(), raylet.pid],
        "env": {k: os.environ.get(k) for k in (
            "RAY_worker_niceness", "RAY_worker_register_timeout_seconds",
            "RAY_DASHBOARD_STARTUP_TIMEOUT_S")},
    }))
    signal.signal(signal.SIGTERM, lambda *_: (raylet.terminate(), raylet.wait(), sys.exit(0)))
    while not (session / "registered").exists():
        if raylet.poll() is not None or "FAKE_RAY_STARVED" in env:
            # ray start's own failure; what it started stays up (a real one's atexit handler
            # would stop it; a killed one's would not)
            print("Exception: The current node timed out during startup. This could happen "
                  "because some of the raylet failed to startup or the GCS has become "
                  "overloaded.", flush=True)
            sys.exit(1)
        time.sleep(0.05)
    (temp / "ray_current_cluster").write_text(f"127.0.0.1:{opts['port']}")
    print("Ray runtime started.", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
