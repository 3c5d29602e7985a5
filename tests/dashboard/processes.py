"""`python -m eventsource ...` in the background, as a user would start it."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
from pathlib import Path


class Process:
    """`python -m eventsource ARGS` (or `python -m MODULE ARGS`) in the
    background; `stop()` sends SIGTERM and waits."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log: Path,
        module: str = "eventsource",
    ) -> None:
        self.args = args
        self.log = log
        # Its log goes to a file: a pipe nobody reads would fill and block it.
        with log.open("w") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def first_line(self, timeout: float = 30.0) -> str:
        """The first line the process prints (it says where it listens)."""
        assert self.popen.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.popen.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.stop()
                raise AssertionError(f"{self.args} printed nothing in {timeout} s: {self.stderr}")
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(10)
            raise AssertionError(f"{self.args} exited {self.popen.returncode}: {self.stderr}")
        return line.strip()

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode
