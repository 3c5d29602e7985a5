"""Running the `eventsource` command as a user does: a process, its exit status, its output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT

Run = Callable[..., subprocess.CompletedProcess[str]]


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PJTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Run:
    """`run_cli(*args, env={...}, cwd=...)`: `python -m eventsource` to completion,
    from a fresh folder of its own unless told otherwise."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsource", *args],
            env=clean_env(**(env or {})),
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed, checked to be one line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return errors[0]
