"""`forget(subject)` on SQLite and PostgreSQL: the subject's personal data reads as
forgotten everywhere, its plaintext is in no byte of the database and no log
line, and other subjects are untouched."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from eventsource import FORGOTTEN, ConcurrencyError, ConfigurationError, EventStore, Repository
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections.rebuild import rebuild
from eventsource.projections.runner import run_workers
from eventsource.projections.worker import Worker
from eventsource.store.driver import driver_transaction
from eventsource.store.schema import personal_data_keys
from eventsource.store.statements import insert_on
from tests.conftest import ROOT
from tests.privacy.domain import Board, Member, MemberJoined, directory_for, roster_for
from tests.privacy.evidence import every_cell, postgres_files, sqlite_files
from tests.privacy.story import ADA, ADA_MOVED, ADA_NOTE, GRACE, PLAINTEXT, tell


class SnapshottedMember(Member, type_name="snapshotted_member", snapshot_every=2):
    pass


def names(store: EventStore) -> dict[str, str]:
    return {e.aggregate_id: e.name for e in store.read_events() if isinstance(e, MemberJoined)}


def test_forget_erases_a_subject_and_nothing_else(
    store_factory: Callable[..., EventStore],
    backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the whole scenario
    store = store_factory(context="members")
    url = store.engine.url.render_as_string(hide_password=False)
    tell(store)
    members, boards = Repository(store, Member), Repository(store, Board)
    ada = members.get("m-ada")
    assert (ada.name, ada.home and ada.home.street) == (ADA[0], ADA_MOVED[0])
    assert boards.get("b-1").notes == [ADA_NOTE, "Grace's note"]

    forgotten = store.forget("m-ada")
    assert forgotten.keys == 1
    assert forgotten.position == store.head_position()

    # Aggregates still load, with placeholders; the other subject is untouched.
    ada = members.get("m-ada")
    assert (ada.name, ada.home, ada.plan, ada.version) == (FORGOTTEN, None, "gold", 2)
    assert boards.get("b-1").notes == [FORGOTTEN, "Grace's note"]
    grace = members.get("m-grace")
    assert (grace.name, grace.home and grace.home.city) == (GRACE[0], GRACE[2])
    assert names(store) == {"m-ada": FORGOTTEN, "m-grace": GRACE[0]}
    # So does another process, which never saw the key.
    with EventStore(url, context="members") as elsewhere:
        assert names(elsewhere) == {"m-ada": FORGOTTEN, "m-grace": GRACE[0]}
        assert Repository(elsewhere, Board).get("b-1").notes == [FORGOTTEN, "Grace's note"]
    # Forgetting again changes nothing.
    assert store.forget("m-ada").keys == 0
    assert store.head_position() == forgotten.position

    # The plaintext is in no table, no file, no log line.
    cells = every_cell(url)
    assert GRACE[0] not in cells  # Grace's data is sealed too, just not forgotten
    raw = sqlite_files(url) if backend == "sqlite" else postgres_files(url)
    for text in PLAINTEXT:
        assert text not in cells
        assert text.encode() not in raw
        assert text not in caplog.text
    with store.engine.connect() as conn:
        subjects = set(conn.execute(sa.select(personal_data_keys.c.subject)).scalars())
    assert subjects == {"m-grace"}


def test_the_deleted_key_is_overwritten_in_the_sqlite_files(
    database_url_factory: Callable[..., str],
) -> None:
    # PostgreSQL keeps a deleted row's bytes until VACUUM reuses the space
    # (docs/privacy.md says what that means for backups too).
    store = EventStore(database_url_factory("sqlite"), context="members")
    store.create_schema()
    tell(store)
    with store.engine.connect() as conn:
        key = conn.execute(
            sa.select(personal_data_keys.c.key).where(personal_data_keys.c.subject == "m-ada")
        ).scalar_one()
    url = store.engine.url.render_as_string(hide_password=False)
    assert key in sqlite_files(url)
    store.forget("m-ada")
    assert key not in sqlite_files(url)
    store.close()


def test_aggregates_that_apply_personal_data_are_never_snapshotted(store: EventStore) -> None:
    with pytest.raises(ConfigurationError, match=r"applies personal data .*MemberJoined"):
        Repository(store, SnapshottedMember)


def test_a_rolled_back_save_leaves_no_key(store_factory: Callable[..., EventStore]) -> None:
    store = store_factory(context="members")
    url = store.engine.url.render_as_string(hide_password=False)
    board = Board("b-1")
    board.leave("m-ada", "first")
    Repository(store, Board).save(board)
    with EventStore(url, context="members") as other:
        stale = Board("b-1")  # a second writer that did not load the board
        stale.leave("m-new", "lost in a conflict")
        with pytest.raises(ConcurrencyError):
            Repository(other, Board).save(stale)
        with other.engine.connect() as conn:
            subjects = set(conn.execute(sa.select(personal_data_keys.c.subject)).scalars())
        assert subjects == {"m-ada"}
        # The key made in memory is written by the next save that uses it.
        fresh = Board("b-2")
        fresh.leave("m-new", "kept")
        Repository(other, Board).save(fresh)
    assert Repository(store, Board).get("b-2").notes == ["kept"]


def test_two_writers_making_a_subjects_first_key_converge(
    store_factory: Callable[..., EventStore],
) -> None:
    first = store_factory(context="members")
    url = first.engine.url.render_as_string(hide_password=False)
    with EventStore(url, context="members") as second:
        mine = Board("b-1")
        mine.leave("m-new", "sealed with a key that loses")
        events = list(mine.pending_events)
        records = [first.codec.encode(e) for e in events]  # first makes a key in memory
        theirs = Board("b-2")
        theirs.leave("m-new", "sealed with the key that wins")
        Repository(second, Board).save(theirs)  # second stores its own key first
        with driver_transaction(first.engine, write=True) as conn:
            resealed, written = first.write_keys(conn, events, records)
            insert_on(conn, resealed)
        assert resealed != records
        assert not written
    with EventStore(url, context="members") as reader:
        boards = Repository(reader, Board)
        assert boards.get("b-1").notes == ["sealed with a key that loses"]
        assert boards.get("b-2").notes == ["sealed with the key that wins"]


def test_threads_saving_a_new_subject_at_once_share_one_key(
    store_factory: Callable[..., EventStore],
) -> None:
    store = store_factory(context="members")
    boards = Repository(store, Board)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def save(n: int) -> None:
        try:
            board = Board(f"b-{n}")
            board.leave("m-new", f"note {n}")
            start.wait()
            boards.save(board)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    url = store.engine.url.render_as_string(hide_password=False)
    with EventStore(url, context="members") as reader:
        assert [Repository(reader, Board).get(f"b-{n}").notes for n in range(6)] == [
            [f"note {n}"] for n in range(6)
        ]


def test_projections_in_another_context_and_their_rebuilds(
    store_factory: Callable[..., EventStore],
    database_url_factory: Callable[..., str],
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    members = store_factory(context="members")
    members_url = members.engine.url.render_as_string(hide_password=False)
    tell(members)
    directory = directory_for("members")
    # The directory context's own database; it reads the members' keys there.
    views = store_factory(url=database_url_factory(backend), context="directory")
    views_url = views.engine.url.render_as_string(hide_password=False)
    reader = EventStore(views_url, context="directory", keys={"members": members_url})

    def catch_up() -> None:
        worker = Worker(
            directory(),
            SqlLogConsumer({"members": members}),
            engine=views.engine,
            codec=reader.codec,
        )
        run_workers([worker], stop=threading.Event(), until_caught_up=True, lag_interval=0)

    def rows() -> dict[str, tuple[str, str | None]]:
        with views.engine.connect() as conn:
            return {
                r.member_id: (r.name, r.street) for r in conn.execute(sa.select(directory.members))
            }

    catch_up()
    assert rows() == {"m-ada": (ADA[0], ADA_MOVED[0]), "m-grace": (GRACE[0], GRACE[1])}

    members.forget("m-ada")
    catch_up()  # the notice drops the copy
    assert rows() == {"m-grace": (GRACE[0], GRACE[1])}

    # Rebuilds (whose codec finds the keys through the settings) replay
    # placeholders; the notice may come before or after them (another topic).
    monkeypatch.setenv("EVENTSOURCE_KEYS", f'{{"members": "{members_url}"}}')
    roster = roster_for("members")
    for cls in (directory, roster):
        assert rebuild(cls, SqlLogConsumer({"members": members}), engine=views.engine) > 0
    assert rows()["m-grace"] == (GRACE[0], GRACE[1])
    assert rows().get("m-ada", (FORGOTTEN, None)) == (FORGOTTEN, None)
    with views.engine.connect() as conn:
        assert dict(conn.execute(sa.select(roster.names)).all()) == {
            "m-ada": FORGOTTEN,
            "m-grace": GRACE[0],
        }
    # Decoded in this context, Ada's events hold placeholders.
    decode = reader.codec.decode
    joined = [decode(r) for r in members.read_log() if r.event_type == "MemberJoined"]
    assert {e.aggregate_id: (e.name, e.home) for e in joined}["m-ada"] == (FORGOTTEN, None)
    reader.close()

    cells = every_cell(views_url)
    for text in PLAINTEXT:
        assert text not in cells
        assert text not in caplog.text


def test_the_forget_command(store_factory: Callable[..., EventStore]) -> None:
    store = store_factory(context="members")
    tell(store)
    url = store.engine.url.render_as_string(hide_password=False)

    def forget(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsource", "forget", *args, "--url", url],
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(ROOT),
                "EVENTSOURCE_CONTEXT": "members",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = forget("m-ada")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("forgot 'm-ada' in context 'members'")
    assert "its key is deleted" in done.stdout
    again = forget("m-ada", "--json")
    assert again.returncode == 0, again.stderr
    assert '"keys_deleted": 0' in again.stdout
    assert names(store) == {"m-ada": FORGOTTEN, "m-grace": GRACE[0]}
