"""The migrations' two branches: the event store's tables and the projection runtime's."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, String, Table

from eventsource import Aggregate, Event, Projection, Repository, View, Worker, handles, on
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.errors import ConfigurationError
from eventsource.store import EventStore, upgrade_schema
from eventsource.store.engine import create_engine
from eventsource.store.migrate import migrations_folder

STORE_TABLES = {
    "events",
    "snapshots",
    "store_identity",
    "relay_heartbeats",
    "personal_data_keys",
}
# The revisions that were the linear history's (`0001` - `0003`).
LINEAR_ERA = {"store_0001", "runtime_0001", "runtime_0002"}


def current_heads() -> set[str]:
    """The newest revision of each branch, as the repository has them now."""
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    return set(ScriptDirectory.from_config(config).get_heads())


RUNTIME_TABLES = {
    "projection_positions",
    "projections",
    "dead_letters",
    "deadlines",
    "projection_members",
}
VERSION_TABLE = "eventsource_alembic_version"


class MgNoted(Event):
    event_type = "mg.noted"

    text: str


class MgNote(Aggregate, type_name="mg_note"):
    @classmethod
    def write(cls, note_id: str, text: str) -> MgNote:
        note = cls(note_id)
        note.trigger(MgNoted(text=text))
        return note

    @on(MgNoted)
    def _noted(self, event: MgNoted) -> None:
        pass


class MgNoteCounts(Projection):
    name = "mg.note_counts"
    topics = ["mgwrite.mg_note"]

    counts = Table(
        "mg_note_counts",
        MetaData(),
        Column("note_id", String(100), primary_key=True),
        Column("n", Integer, nullable=False),
    )

    @handles(MgNoted)
    def _noted(self, event: MgNoted, view: View) -> None:
        view.increment(self.counts, event.aggregate_id, n=1)


def script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    return ScriptDirectory.from_config(config)


def names(revisions: str | Sequence[str] | None) -> tuple[str, ...]:
    if revisions is None:
        return ()
    return (revisions,) if isinstance(revisions, str) else tuple(revisions)


def heads(branch: str) -> str:
    head = script().revision_map.get_current_head(branch)
    assert head is not None
    return head


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def stamped(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def db_upgrade(url: str, *options: str) -> str:
    """`eventsource db upgrade --url URL [options]`; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "eventsource", "db", "upgrade", "--url", url, *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_branch_creates_only_its_own_tables(
    backend: str, database_url_factory: Callable[..., str]
) -> None:
    write_side, read_side = database_url_factory(backend), database_url_factory(backend)
    with EventStore(write_side, context="mgwrite") as store:
        store.create_schema("store")
        Repository(store, MgNote).save(MgNote.write("n1", "hello"))
        assert Repository(store, MgNote).get("n1").version == 1
    upgrade_schema(read_side, "runtime")
    assert tables(write_side) == STORE_TABLES | {VERSION_TABLE}
    assert stamped(write_side) == {heads("store")}
    assert tables(read_side) == RUNTIME_TABLES | {VERSION_TABLE}
    assert stamped(read_side) == {heads("runtime")}

    # Each side can take the other branch later, and then holds both.
    upgrade_schema(write_side, "runtime")
    upgrade_schema(read_side)
    both = STORE_TABLES | RUNTIME_TABLES | {VERSION_TABLE}
    assert tables(write_side) == tables(read_side) == both
    assert stamped(write_side) == stamped(read_side) == {heads("store"), heads("runtime")}


def test_db_upgrade_upgrades_both_branches_or_the_one_it_is_given(tmp_path) -> None:
    write_side, both = f"sqlite:///{tmp_path / 'w.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    shown = db_upgrade(write_side, "--branch", "store")
    assert f"{write_side}: store schema is up to date" in shown
    assert f"{both}: schema is up to date" in db_upgrade(both)
    assert tables(write_side) == STORE_TABLES | {VERSION_TABLE}
    assert tables(both) == STORE_TABLES | RUNTIME_TABLES | {VERSION_TABLE}


def test_create_schema_makes_both_branches_unless_told_otherwise(
    backend: str, database_url_factory: Callable[..., str]
) -> None:
    url = database_url_factory(backend)
    with EventStore(url, context="mgboth") as store:
        store.create_schema()
    assert tables(url) == STORE_TABLES | RUNTIME_TABLES | {VERSION_TABLE}


def test_a_projection_folds_a_write_side_database_into_a_database_of_its_own(
    backend: str, database_url_factory: Callable[..., str]
) -> None:
    write_side, read_side = database_url_factory(backend), database_url_factory(backend)
    views = create_engine(read_side)
    with EventStore(write_side, context="mgwrite") as store:
        store.create_schema("store")
        Repository(store, MgNote).save(MgNote.write("n1", "a"), MgNote.write("n2", "b"))
        worker = Worker(MgNoteCounts(), SqlLogConsumer({"mgwrite": store}), engine=views)
        try:
            assert worker.run(until_caught_up=True) == 2
        finally:
            worker.close()
    with views.connect() as conn:
        assert conn.execute(sa.select(MgNoteCounts.counts.c.n)).scalars().all() == [1, 1]
    views.dispose()
    # The worker added the runtime's tables where it writes, and nothing where it reads.
    assert tables(write_side) == STORE_TABLES | {VERSION_TABLE}
    assert tables(read_side) == RUNTIME_TABLES | {VERSION_TABLE, "mg_note_counts"}


def test_revision_ids_name_their_branch_and_the_store_knows_no_reader() -> None:
    revisions = list(script().walk_revisions())
    assert {r.revision for r in revisions} >= {"store_0001", "runtime_0001", "runtime_0002"}
    for revision in revisions:
        found = re.fullmatch(r"(store|runtime)_\d{4}", revision.revision)
        assert found, f"{revision.revision}: ids are <branch>_<4 digits>"
        assert revision.branch_labels == {found.group(1)}, revision.revision
        # Every revision it needs is on its own branch: the branches are
        # independent, so a database can hold either alone.
        needs = {*names(revision.down_revision), *names(revision.dependencies)}
        assert all(n.startswith(found.group(1) + "_") for n in needs), revision.revision


def test_unknown_branches_are_configuration_errors(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="unknown schema branches"):
        upgrade_schema(f"sqlite:///{tmp_path / 'x.db'}", "views")  # type: ignore[arg-type]
