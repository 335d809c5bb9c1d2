"""The real Ray 2.60 with agents slower than its raylet's 15 s window for their port files, as
on a starved machine (there the agents took minutes to import Ray): Ray's own ``ray.init``
fails, seqenc's local start does not, and leaves no process behind.

The agents (dashboard agent, runtime-env agent) are slowed by a ``sitecustomize`` on their
PYTHONPATH, which every process of the runtime inherits; only they sleep. Each path runs in
its own driver process, so that this test's runtimes are not the other tests'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray")

SLOW_S = 25  # past the raylet's 15 s, short of ray.init's 30 s wait for the raylet
SITE = f"""
import sys, time
if sys.argv[:1] and sys.argv[0].endswith(("dashboard/agent.py", "runtime_env/agent/main.py")):
    time.sleep({SLOW_S})
"""
RAY_INIT = """
import sys, ray
try:
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=sys.argv[1])
except Exception as e:
    print("failed:", e)
"""
SEQENC = """
import ray
from seqenc.ray.procs import descendant_pids
from seqenc.ray.runtime import start_runtime, stop_runtime
assert start_runtime(ray, None, num_cpus=1, attempts=1)  # no retry to hide a failure
assert ray.get(ray.remote(lambda: 41).remote()) == 41
stop_runtime(ray)
print("left:", sorted(descendant_pids()))
"""


def _run(code: str, site: Path, *args: str) -> str:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": path}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_agents_slower_than_the_raylets_window_fail_ray_init_but_not_a_seqenc_start(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    control = Path(tempfile.mkdtemp(prefix="seqenc-ctl-"))  # short: unix sockets go under it
    try:
        out = _run(RAY_INIT, site, str(control))
        assert "failed: The current node timed out during startup" in out
        [session] = control.glob("session_2*")
        err = (session / "logs" / "raylet.err").read_text()
        assert "Timed out waiting for file" in err  # the raylet's 15 s, not something else
    finally:  # what the failed ray.init left (agents still asleep): the session names them
        from seqenc.ray.procs import kill_all, mentioning

        kill_all(mentioning(str(control)))
        shutil.rmtree(control, ignore_errors=True)
    assert _run(SEQENC, site).strip().splitlines()[-1] == "left: []"
