"""Paired-round statistics and the contender processes of the peer benchmark."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the quartiles of `values`."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
    }


def paired(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """The spread of the per-round ratios ours/theirs (rates of the same round)."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError("paired rounds need the same number of samples on both sides")
    return spread([a / b for a, b in zip(ours, theirs, strict=True)])


@dataclass
class Contender:
    """A contender's process, spoken to one JSON line at a time."""

    name: str
    command: list[str]
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self) -> Contender:
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return self

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin
        assert self.process.stdout
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the process ended (exit {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def python_module(module: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", module]
