"""A wheel carries the migrations: installed in a fresh venv, it migrates a database."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.migrations.test_branches import RUNTIME_TABLES, STORE_TABLES, VERSION_TABLE

# What a checkout holds beside the sources: never part of a build.
NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "demo-data", "*.db", "*.db-*",
)  # fmt: skip


def run(*command: str | Path, cwd: Path) -> str:
    # Nothing of the checkout's environment: the installed wheel must do alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHONPATH"))}
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_migrates(tmp_path: Path) -> None:
    # 1. Build the wheel from a copy of the checkout, as a release would.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("eventsource-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["eventsource", "sample_app"]
    assert {
        "eventsource/migrations/env.py",
        "eventsource/migrations/script.py.mako",
        "eventsource/migrations/versions/store_0001_events_snapshots.py",
        "eventsource/migrations/versions/runtime_0002_dead_letters_deadlines.py",
    } <= names
    assert not any(n.startswith("migrations/") for n in names)

    # 2. Install it, with its dependencies, into a fresh venv.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)

    # 3. The installed command and API migrate, from outside the checkout.
    out = run(
        venv / "bin" / "eventsource", "db", "upgrade", "--url", "sqlite:///both.db", cwd=tmp_path
    )
    assert "schema is up to date" in out
    assert sqlite_tables(tmp_path / "both.db") == STORE_TABLES | RUNTIME_TABLES | {VERSION_TABLE}
    script = (
        "import eventsource\n"
        "eventsource.EventStore('sqlite:///store.db', context='w').create_schema('store')\n"
        "print(eventsource.__file__)\n"
    )
    imported = run(venv / "bin" / "python", "-c", script, cwd=tmp_path).strip()
    assert Path(imported).is_relative_to(venv)
    assert sqlite_tables(tmp_path / "store.db") == STORE_TABLES | {VERSION_TABLE}
