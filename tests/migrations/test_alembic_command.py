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
        assert stamped(url) == {"store_0001", "runtime_0002"}
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
    for branch, rev_id, message in [
        ("store", "store_0002", "store identity"),
        ("runtime", "runtime_0003", "revision of deadlines"),
    ]:
        done = alembic(
            "revision", "--head", f"{branch}@head", "--rev-id", rev_id, "-m", message, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
    versions = tmp_path / "migrations" / "versions"
    assert (versions / "store_0002_store_identity.py").exists()
    assert (versions / "runtime_0003_revision_of_deadlines.py").exists()
    written = (versions / "store_0002_store_identity.py").read_text()
    assert 'down_revision = "store_0001"' in written  # and formatted by ruff

    config = Config(str(tmp_path / "alembic.ini"))
    revisions = ScriptDirectory.from_config(config).revision_map
    assert sorted(revisions.heads) == ["runtime_0003", "store_0002"]
    assert revisions.get_revision("store_0002").down_revision == "store_0001"
    assert revisions.get_revision("runtime_0003").down_revision == "runtime_0002"
    assert revisions.get_current_head("store") == "store_0002"

    url = f"sqlite:///{tmp_path / 'x.db'}"
    done = alembic("-x", f"url={url}", "upgrade", "heads", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert stamped(url) == {"store_0002", "runtime_0003"}
