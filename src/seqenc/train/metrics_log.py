"""metrics.jsonl: one JSON object per line (train / eval / end events), appended by the main
process and read back for the learning curves and the run's result."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from seqenc import atomic


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class MetricsLog:
    """Appends JSON lines; only the main process holds one."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")  # one write per record: no torn lines

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (a resumed run logs them again)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line and json.loads(line).get("step", 0) <= step
                and json.loads(line).get("event") != "end"]
        atomic.write_text(self.path, "".join(line + "\n" for line in kept))


class Meter:
    """Loss and throughput since the last training log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.values = [0.0, 0.0, 0.0, 0.0]
        self.start = time.perf_counter()

    def add(self, loss: float, units: int, examples: int, tokens: int) -> None:
        for i, v in enumerate((loss, units, examples, tokens)):
            self.values[i] += v

    def totals(self) -> list[float]:
        return list(self.values)

    def seconds(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)
