"""The `alembic` command, run from the repository root, migrates as `eventsource db upgrade`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.conftest import ROOT
from tests.migrations.test_branches import (
    RUNTIME_TABLES,
    STORE_TABLES,
    VERSION_TABLE,
    current_heads,
    stamped,
    tables,
)


def alembic(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=cwd,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upgrade_heads_takes_the_url_from_x_url_or_the_environment(
    backend: str, database_url_factory: Callable[..., str]
) -> None:
    by_option, by_environment = database_url_factory(backend), database_url_factory(backend)
    done = alembic("-x", f"url={by_option}", "upgrade", "heads")
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> store_0001" in done.stderr
    done = alembic("upgrade", "heads", EVENTSOURCE_DATABASE_URL=by_environment)
    assert done.returncode == 0, done.stderr
    for url in (by_option, by_environment):
        assert tables(url) == STORE_TABLES | RUNTIME_TABLES | {VERSION_TABLE}
        assert stamped(url) == current_heads()
    # Again: nothing to do.
    done = alembic("-x", f"url={by_option}", "upgrade", "heads")
    assert done.returncode == 0, done.stderr
    assert "Running upgrade" not in done.stderr


def test_one_branch_is_upgraded_by_its_label(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'write_side.db'}"
    done = alembic("-x", f"url={url}", "upgrade", "store@head")
    assert done.returncode == 0, done.stderr
    assert tables(url) == STORE_TABLES | {VERSION_TABLE}
    # `head` alone is ambiguous with two branches; Alembic says what to type.
    done = alembic("-x", f"url={url}", "upgrade", "head")
    assert done.returncode != 0
    assert "'heads' for all heads" in done.stderr


def test_a_new_revision_goes_on_the_branch_it_names(tmp_path: Path) -> None:
    # A copy of the environment, so that the repository's stays as it is.
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    config = Config(str(tmp_path / "alembic.ini"))
    before = ScriptDirectory.from_config(config).revision_map
    heads = {branch: before.get_current_head(branch) for branch in ("store", "runtime")}
    new_ids = {branch: _next(head) for branch, head in heads.items() if head}
    for branch, message in [("store", "a store change"), ("runtime", "a runtime change")]:
        done = alembic(
            "revision",
            "--head",
            f"{branch}@head",
            "--rev-id",
            new_ids[branch],
            "-m",
            message,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    versions = tmp_path / "migrations" / "versions"
    written = (versions / f"{new_ids['store']}_a_store_change.py").read_text()
    assert f'down_revision = "{heads["store"]}"' in written  # and formatted by ruff
    assert (versions / f"{new_ids['runtime']}_a_runtime_change.py").exists()

    revisions = ScriptDirectory.from_config(config).revision_map
    assert sorted(revisions.heads) == sorted(new_ids.values())
    for branch, rev_id in new_ids.items():
        assert revisions.get_revision(rev_id).down_revision == heads[branch]
        assert revisions.get_current_head(branch) == rev_id

    url = f"sqlite:///{tmp_path / 'x.db'}"
    done = alembic("-x", f"url={url}", "upgrade", "heads", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert stamped(url) == set(new_ids.values())


def _next(head: str) -> str:
    branch, number = head.rsplit("_", 1)
    return f"{branch}_{int(number) + 1:04d}"
