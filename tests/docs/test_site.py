"""The docs site builds with no warning, and its generated pages say what the code does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from eventsource.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    done = build(tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "WARNING" not in output, output[-5000:]
    settings = (tmp_path / "site" / "settings" / "index.html").read_text()
    for name, field in Settings.model_fields.items():
        assert f"EVENTSOURCE_{name.upper()}" in settings
        assert field.description, f"setting {name} has no docstring"
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in commands():
        assert f"<code>{command}</code>" in cli, command


def commands() -> list[str]:
    """Every command path of `eventsource`, from click's own objects."""
    from eventsource.cli import cli

    out = []

    def walk(command: click.Command, path: str) -> None:
        out.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")

    walk(cli, "eventsource")
    return out


def test_operations_documents_every_status_field() -> None:
    from dataclasses import fields

    from eventsource.bus.relay_status import RelayMember, RelayStatus
    from eventsource.projections.deadletters import DeadLetter
    from eventsource.projections.members import Member
    from eventsource.projections.status import ConsumerStatus, PartitionStatus

    page = (ROOT / "docs" / "operations.md").read_text()
    names = {"lag", "lag_events"}  # properties that as_dict() adds
    for cls in (ConsumerStatus, PartitionStatus, Member, RelayStatus, RelayMember, DeadLetter):
        names |= {f.name for f in fields(cls)}
    names -= {"projection", "record"}  # a dead letter's, not in its JSON
    missing = sorted(n for n in names if f"`{n}`" not in page)
    assert missing == [], f"docs/operations.md does not explain {missing}"
