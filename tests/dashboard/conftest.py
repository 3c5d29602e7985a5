"""The sample app's scene, and `eventsource dashboard` (or a worker) run as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dashboard.processes import Process
from tests.dashboard.scene import Scene, build


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """The scene, shared by a module's tests that only read it."""
    return build(tmp_path_factory.mktemp("scene") / "data")


Start = Callable[..., Process]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """`start(*args, env={...})`: `python -m eventsource ARGS` in the background,
    stopped (SIGTERM) at the end of the test, which checks it exited cleanly."""
    started: list[Process] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Process:
        log = tmp_path / f"process-{len(started)}.log"
        process = Process(list(args), clean_env(**(env or {})), tmp_path, log)
        started.append(process)
        return process

    yield run
    for process in reversed(started):
        code = process.stop()
        assert code == 0, (process.args, code, process.stderr)


def dashboard_url(process: Process) -> str:
    line = process.first_line()
    assert " on http://" in line, line
    return line.split(" on ", 1)[1].split()[0]


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(tmp_path: Path) -> Run:
    """`run_cli(*args, env={...})`: `python -m eventsource ARGS` to completion."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsource", *args],
            env=clean_env(**(env or {})),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run
