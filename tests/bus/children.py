"""Commands run as child processes: their output collected, their exit awaited."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from tests.bus.conftest import PARTITIONS
from tests.conftest import ROOT


def cli_env(kafka_servers: str) -> dict[str, str]:
    return {
        **os.environ,
        "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
        "EVENTSOURCE_TOPIC_PARTITIONS": str(PARTITIONS),
        "PYTHONUNBUFFERED": "1",
    }


class Child:
    """A command running in the background; its stderr lines are collected."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"exited: {''.join(self.lines)}"
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the exit (killing it after `timeout`); (return code, stdout, stderr)."""
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        if self.process.stdout.closed:
            return self.process.returncode, "", "".join(self.lines)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        out = self.process.stdout.read()
        self._reader.join(10)
        assert not self._reader.is_alive(), "a thread the test started is still running"
        self.process.stdout.close()
        self.process.stderr.close()
        return self.process.returncode, out, "".join(self.lines)
