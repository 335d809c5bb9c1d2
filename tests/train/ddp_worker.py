"""Runs ``seqenc.train`` under torchrun and records every filesystem change each process makes
inside --output, so the test can check that only rank 0 writes.

    python -m torch.distributed.run --nproc_per_node 2 --standalone ddp_worker.py AUDIT ARGS...

writes AUDIT.rank<N>.json: a list of [event, path] for opens-for-writing, mkdir, rename and
remove under the output directory. (Files written by native code, such as safetensors, are
created inside directories made with os.mkdir, which is recorded.)
"""

from __future__ import annotations

import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
MUTATING = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate")


def main() -> None:
    audit, args = sys.argv[1], sys.argv[2:]
    output = os.path.abspath(args[args.index("--output") + 1])
    events: list[tuple[str, str]] = []

    def hook(event: str, hook_args: tuple) -> None:
        if event == "open":
            path, mode, flags = hook_args
            if not isinstance(path, (str, bytes, os.PathLike)):
                return
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) \
                else bool(flags & WRITE_FLAGS)
            if writing:
                events.append(("open", os.fsdecode(path)))
        elif event in MUTATING and isinstance(hook_args[0], (str, bytes, os.PathLike)):
            events.append((event, os.fsdecode(hook_args[0])))

    sys.addaudithook(hook)
    from seqenc.train.cli import train_group

    try:
        train_group.main(args, prog_name="seqenc train", standalone_mode=False)
    finally:
        rank = os.environ.get("RANK", "0")
        mine = [e for e in events if os.path.abspath(e[1]).startswith(output)]
        with open(f"{audit}.rank{rank}.json", "w") as f:
            json.dump(mine, f)


if __name__ == "__main__":
    main()
