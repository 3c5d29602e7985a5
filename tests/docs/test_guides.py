"""The guides' examples run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def run_page(page: str) -> dict[str, object]:
    """Run the Python blocks of `docs/<page>` in order, in one namespace; blocks
    headed by a file name (`# sample_app/...`) must be excerpts of that file."""
    blocks = BLOCK.findall((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} has no Python blocks"
    namespace: dict[str, object] = {"__name__": f"docs_{page.removesuffix('.md')}"}
    for block in blocks:
        if block.startswith("# sample_app/"):
            header, _, body = block.partition("\n")
            path = ROOT / header.removeprefix("# ").strip()
            assert body.strip() in path.read_text(), f"docs/{page}: excerpt of {path} is stale"
            continue
        # As a reader runs it: without this module's `from __future__` flags.
        exec(compile(block, f"docs/{page}", "exec", dont_inherit=True), namespace)
    return namespace


def test_getting_started_runs() -> None:
    namespace = run_page("getting-started.md")
    assert namespace["position"] == 3


def test_streams_guide_runs() -> None:
    namespace = run_page("streams.md")
    assert str(namespace["contacts"]) == "crm.contacts"
    assert namespace["movements"].output == "payments.card_movements"  # type: ignore[attr-defined]
    namespace["payments"].close()  # type: ignore[attr-defined]


def test_connect_guide_runs_and_shows_the_tested_connector_configs() -> None:
    from tests.connect.configs import FILE_SOURCE, JSON_SINK, RAW_SINK

    namespace = run_page("connect.md")
    assert str(namespace["counts"]) == "warehouse.counts"
    shown = [json.loads(b) for b in JSON_BLOCK.findall((ROOT / "docs" / "connect.md").read_text())]
    # Each configuration the tests run is shown as it is, apart from its topic and file.
    placeholders = {"topic", "topics", "file"}
    for tested in (JSON_SINK, RAW_SINK, FILE_SOURCE):
        same = [
            config
            for config in shown
            if config.keys() == tested.keys()
            and all(config[k] == v for k, v in tested.items() if k not in placeholders)
        ]
        assert same, f"docs/connect.md does not show {tested}"
