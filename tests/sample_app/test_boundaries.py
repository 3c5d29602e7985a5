"""Bounded contexts share nothing but the events they publish."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sample_app.contexts import CONTEXTS

SAMPLE = Path(__file__).resolve().parents[2] / "sample_app"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_context_imports_only_the_events_of_other_contexts(context: str) -> None:
    files = sorted((SAMPLE / context).rglob("*.py"))
    assert files, f"no modules in sample_app/{context}"
    offending: list[str] = []
    for path in files:
        for module in imported_modules(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[0] != "sample_app" or parts[1] not in CONTEXTS:
                continue
            other = parts[1]
            if other != context and (len(parts) < 3 or parts[2] != "events"):
                offending.append(f"{path.relative_to(SAMPLE)} imports {module}")
    assert offending == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from sample_app.orders.domain import Order\nimport sample_app.orders.events\n")
    modules = imported_modules(bad)
    assert "sample_app.orders.domain" in modules
    assert "sample_app.orders.events" in modules
