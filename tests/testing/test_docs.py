"""docs/testing.md: its code blocks, in order, are a test module that passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from eventsource.testing.contracts import LogConsumerContract

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_pages_examples_pass_as_a_test_module(tmp_path: Path) -> None:
    code = "\n\n".join(BLOCK.findall(PAGE.read_text()))
    module = tmp_path / "test_docs_testing.py"
    module.write_text(code)
    tests = len(re.findall(r"^def test_", code, re.MULTILINE))
    contract = [name for name in dir(LogConsumerContract) if name.startswith("test_")]
    assert tests >= 8
    assert "(LogConsumerContract)" in code

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q", module],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert re.search(rf"\b{tests + len(contract)} passed\b", done.stdout), done.stdout[-2000:]
