"""The machine header and the result tables: rich on a terminal, aligned text otherwise."""

from __future__ import annotations

import gc
import math
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

from eventsource.tuning import InterpreterTuning

_LIBRARIES = ("eventsource", "sqlalchemy", "pydantic", "pydantic-core", "psycopg", "orjson")
_STARTED = time.perf_counter()


def elapsed() -> float:
    """Seconds since the benchmark started."""
    return time.perf_counter() - _STARTED


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the benchmark started."""
    print(f"{time.perf_counter() - _STARTED:6.1f}s {message}", file=sys.stderr, flush=True)


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Time with the garbage collector on, but blind to the prepared test data.

    Garbage from the set-up is collected first; everything alive then (test
    data, earlier results) is frozen, so a collection that one contender's
    allocations trigger does not walk the harness's own objects and charge
    that to whoever happened to be running.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def cli_tuning() -> Iterator[InterpreterTuning | None]:
    """The interpreter tuning the `eventsource` command applies when
    `EVENTSOURCE_TUNE_INTERPRETER` is true (library code never tunes)."""
    if os.environ.get("EVENTSOURCE_TUNE_INTERPRETER", "").lower() not in ("1", "true", "yes"):
        yield None
        return
    with InterpreterTuning() as tuning:
        yield tuning


def turns(names: tuple[str, ...], n: int) -> list[str]:
    """`names` rotated by `n`: who goes first changes from run to run."""
    k = n % len(names)
    return [*names[k:], *names[:k]]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(postgres_version: str | None) -> dict[str, Any]:
    libraries = {}
    for name in _LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = "-"
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version or "-",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "libraries": libraries,
    }


def header_lines(info: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return [
        f"machine     {info['host']}: {info['cpu']}, {info['cores']} cores, {info['os']},"
        f" load average {' '.join(map(str, info['load_average']))} (at the end)",
        f"software    {info['python']}, SQLite {info['sqlite']}, PostgreSQL {info['postgresql']}",
        f"libraries   {libs}",
        "settings    " + ", ".join(f"{k}={v}" for k, v in settings.items()),
    ]


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: int = 1  # how many leading columns are text (left-aligned)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ratio(value: float | None) -> str:
    """Two decimals, rounded down: 0.695 prints 0.69, never a 0.70 beside a missed 0.7."""
    if value is None:
        return "-"
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}" if math.isfinite(value) else str(value)


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def render(header: list[str], tables: list[Table]) -> None:
    if sys.stdout.isatty():
        _render_rich(header, tables)
    else:
        _render_plain(header, tables)


def _render_rich(header: list[str], tables: list[Table]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console()
    for line in header:
        console.print(line, highlight=False)
    for table in tables:
        out = RichTable(
            title=table.title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for i, column in enumerate(table.columns):
            justify: Literal["left", "right"] = "left" if i < table.left else "right"
            out.add_column(column, justify=justify, no_wrap=True, min_width=len(column))
        for row in table.rows:
            styled = [f"[bold red]{c}[/]" if c == "NO" else c for c in row]
            out.add_row(*styled)
        console.print()
        console.print(out)
        for note in table.notes:
            console.print(f"  {note}", highlight=False)


def _render_plain(header: list[str], tables: list[Table]) -> None:
    print("\n".join(header))
    for table in tables:
        cells = [table.columns, *table.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
        print()
        print(table.title)
        for n, row in enumerate(cells):
            parts = [
                c.ljust(w) if i < table.left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            print("  " + "  ".join(parts).rstrip())
            if n == 0:
                print("  " + "  ".join("-" * w for w in widths))
        for note in table.notes:
            print(f"  {note}")
