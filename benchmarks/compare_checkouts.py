"""Run one benchmark in two checkouts of eventsource, in alternating rounds.

    .venv/bin/python -m benchmarks.compare_checkouts --base ../base --rounds 5 \\
        --metric results.fold.rates.framework -- benchmarks.bench_projections --events 100000

For a change that should cost nothing (a refactoring, say): each round runs
the benchmark module once in the base checkout and once in this one, the
order alternating from round to round, each with its checkout's own
`.venv/bin/python` and `--json`. For each `--metric` (a dotted path into the
benchmark's JSON output, a rate: higher is better) it prints the per-round
ratio this/base, their median and their range. `--save FILE` keeps every
sample with the machine and both commits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def run_once(checkout: Path, module: str, args: list[str]) -> dict[str, Any]:
    python = checkout / ".venv" / "bin" / "python"
    completed = subprocess.run(
        [str(python), "-m", module, *args, "--json"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )
    if completed.returncode != 0:
        sys.exit(f"{module} failed in {checkout}:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def dig(data: Any, path: str) -> float:
    for part in path.split("."):
        data = data[part]
    return float(data)


def commit_of(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--metric", action="append", required=True, help="dotted JSON path")
    parser.add_argument("--save", type=Path, help="write every sample here as JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- module [args]")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"]
    module, module_args = command[0], command[1:]
    checkouts = {"base": args.base.resolve(), "this": HERE}
    samples: dict[str, dict[str, list[float]]] = {m: {"base": [], "this": []} for m in args.metric}
    for round_ in range(args.rounds):
        order = ["base", "this"] if round_ % 2 == 0 else ["this", "base"]
        for side in order:
            output = run_once(checkouts[side], module, module_args)
            for metric in args.metric:
                samples[metric][side].append(dig(output, metric))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "command": command,
        "commits": {side: commit_of(path) for side, path in checkouts.items()},
        "metrics": {},
    }
    for metric, by_side in samples.items():
        ratios = [t / b for t, b in zip(by_side["this"], by_side["base"], strict=True)]
        report["metrics"][metric] = {**by_side, "ratios": ratios}
        print(
            f"{metric}: this/base median {statistics.median(ratios):.3f}"
            f" (range {min(ratios):.3f} - {max(ratios):.3f}, {len(ratios)} rounds);"
            f" base median {statistics.median(by_side['base']):,.0f},"
            f" this median {statistics.median(by_side['this']):,.0f}"
        )
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
