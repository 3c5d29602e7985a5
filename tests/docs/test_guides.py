"""The guides' examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def run_page(page: str) -> dict[str, object]:
    """Run the Python blocks of `docs/<page>` in order, in one namespace."""
    blocks = BLOCK.findall((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} has no Python blocks"
    namespace: dict[str, object] = {"__name__": f"docs_{page.removesuffix('.md')}"}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    return namespace


def test_getting_started_runs() -> None:
    namespace = run_page("getting-started.md")
    assert namespace["position"] == 3
