"""The README's examples: excerpts match the sample app, and the rest runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_excerpts_are_the_sample_app_verbatim() -> None:
    excerpts = [b for b in blocks() if b.startswith("# sample_app/")]
    assert len(excerpts) >= 4
    for block in excerpts:
        header, _, body = block.partition("\n")
        path = ROOT / header.removeprefix("# ").strip()
        assert body.strip() in path.read_text(), f"README excerpt of {path} is out of date"


def test_examples_run_in_order() -> None:
    runnable = [b for b in blocks() if not b.startswith("# sample_app/")]
    assert len(runnable) >= 3
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in runnable:
        exec(compile(block, "README.md", "exec"), namespace)
    store = namespace["orders"]
    store.close()  # type: ignore[attr-defined]
