"""Rebuilding a projection from offset zero beside the live view, then swapping it in.

On the embedded log with SQLite and on Kafka with PostgreSQL: writers keep
appending and a live worker keeps updating the view while the rebuild runs;
readers only ever see a complete view (one consistent with its positions);
after the swap the view equals an independent fold of every event. Shipping
a new version: its worker refuses to start until rebuilt, and a worker of the
old version stops at the swap instead of writing into the new tables.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from eventsource import EventStore, Repository, Worker
from eventsource.bus.partitioner import partition_for
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.errors import ProjectionVersionMismatch
from eventsource.projections.rebuild import SUFFIX, RebuildProgress, rebuild
from eventsource.projections.tables import dead_letters, projections
from tests.conftest import unique
from tests.projections.apps_rebuild import (
    RbWallet,
    WalletTotalsBase,
    fold_wallets,
    wallet_totals,
    wallet_totals_v2,
)
from tests.projections.rig import RIGS, Background, Rig, eventually, open_rig


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, database_url_factory: Callable[..., str]) -> Iterator[Rig]:
    with open_rig(request.param, database_url_factory) as opened:
        yield opened


class Writer:
    """Opens wallets and deposits into them from a thread until stopped."""

    def __init__(self, store: EventStore, *, owners: int = 7, seed: int = 1) -> None:
        self.repository = Repository(store, RbWallet)
        self.owners = owners
        self.random = random.Random(seed)
        self.wallets: list[RbWallet] = []
        self.position = 0
        self.saves = 0
        self._stop = threading.Event()
        self._thread: Background | None = None

    def populate(self, wallets: int, deposits: int) -> int:
        for i in range(wallets):
            self.wallets.append(RbWallet.open(f"w{i}", f"owner-{i % self.owners}"))
        for _ in range(deposits):
            self.random.choice(self.wallets).deposit(self.random.randint(1, 100))
        self.position = self.repository.save(*self.wallets)
        return self.position

    def step(self) -> None:
        if self.random.random() < 0.1:
            wallet = RbWallet.open(f"w{len(self.wallets)}", f"owner-{len(self.wallets) % 7}")
            self.wallets.append(wallet)
        else:
            wallet = self.random.choice(self.wallets)
        for _ in range(self.random.randint(1, 3)):
            wallet.deposit(self.random.randint(1, 100))
        self.position = self.repository.save(wallet)
        self.saves += 1

    def start(self, pause: float = 0.003) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.step()
                time.sleep(pause)

        self._thread = Background(run, "writer")

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.position


class Reader:
    """Reads the live view in a thread and checks that it is complete.

    One statement reads the events the view has counted and the positions
    it claims to have applied (one snapshot on both databases); the view is
    complete when it counted exactly the stored events at or below those
    positions, partition by partition. A half-built or empty table fails.
    """

    def __init__(self, rig: Rig, name: str) -> None:
        self.rig = rig
        self.name = name
        self.checks = 0
        self.lowest = -1
        self.violations: list[str] = []
        self._seen: list[tuple[int, int]] = []  # (position, partition)
        self._stop = threading.Event()
        self._thread: Background | None = None

    def check(self) -> None:
        with self.rig.views.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT (SELECT COALESCE(SUM(events), 0) FROM rb_wallets) AS counted,"
                    " p.partition, p.last_position FROM projection_positions p"
                    " WHERE p.projection = :name"
                ),
                {"name": self.name},
            ).all()
        if not rows:
            self.violations.append("no positions at all")
            return
        counted = int(rows[0][0])
        applied = {int(r[1]): int(r[2]) for r in rows}
        self._catch_up(max(applied.values()))
        expected = sum(1 for pos, p in self._seen if pos <= applied.get(p, 0))
        if counted != expected:
            self.violations.append(
                f"view counts {counted} events, its positions {applied} say {expected}"
            )
        self.lowest = counted if self.lowest < 0 else min(self.lowest, counted)
        self.checks += 1

    def _catch_up(self, position: int) -> None:
        after = self._seen[-1][0] if self._seen else 0
        while after < position:
            page = self.rig.store.read_log(after, 5000)
            if not page:
                return
            for record in page:
                part = partition_for(record.aggregate_id, self.rig.partitions)
                self._seen.append((record.position, part if self.rig.partitions > 1 else 0))
            after = page[-1].position

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.check()

        self._thread = Background(run, "reader")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def live_worker(rig: Rig, cls: type[WalletTotalsBase], stop: threading.Event) -> Background:
    worker = Worker(cls(), rig.log(), engine=rig.views, batch_size=100, poll_timeout=0.05)
    return Background(lambda: worker.run(stop=stop), f"live-{cls.name}")


def view_rows(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    return rig.rows("rb_wallets", "wallet"), rig.rows("rb_owners", "owner")


def table_names(engine: Engine) -> set[str]:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_rebuild_under_writes_swaps_a_complete_view(rig: Rig) -> None:
    name = unique("rb_totals")
    Totals = wallet_totals(rig.context, name)
    writer = Writer(rig.store)
    head = writer.populate(wallets=60, deposits=1500)
    rig.start_relay()
    live_stop = threading.Event()
    live = live_worker(rig, Totals, live_stop)
    rig.wait(Totals, head)
    before = view_rows(rig)
    assert before == fold_wallets(rig.records())

    reader = Reader(rig, name)
    reader.check()
    assert not reader.violations, reader.violations
    reader.start()
    writer.start()
    reports: list[RebuildProgress] = []
    at_swap: list[tuple[int, int]] = []  # (reader checks, writer saves)
    folded = itertools.count(1)

    def pace(_self: object) -> None:
        # The same projection, folding slower: every 250 events it waits for
        # a reader's check and a writer's save, so that both overlap every
        # stage of the rebuild however loaded the machine is.
        time.sleep(0.0003)
        if next(folded) % 250 == 0:
            checks, saves = reader.checks, writer.saves
            eventually(
                lambda: reader.checks > checks and writer.saves > saves,
                timeout=20,
                what="a reader's check and a writer's save during the rebuild",
            )

    Rebuilding = wallet_totals(rig.context, name, _pace=pace)
    applied = rebuild(
        Rebuilding,
        rig.log(),
        engine=rig.views,
        batch_size=150,
        progress=reports.append,
        before_swap=lambda: at_swap.append((reader.checks, writer.saves)),
    )
    time.sleep(0.5)  # writes, reads and the live worker go on after the swap
    last = writer.stop()
    rig.wait(Totals, last)
    reader.stop()  # then a last check of the final view, from this thread alone
    reader.check()
    live_stop.set()
    live.join()

    assert not reader.violations, reader.violations[:5]
    checks_at_swap, saves_at_swap = at_swap[0]
    assert checks_at_swap >= 5, "the readers never overlapped the rebuild"
    assert reader.lowest >= sum(w["events"] for w in before[0].values())
    assert saves_at_swap >= 5, "the writers never overlapped the rebuild"
    assert applied >= head
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert reports[-1].done == applied
    assert view_rows(rig) == fold_wallets(rig.records())
    # The rebuild left nothing behind: no shadow tables, positions or state.
    assert not {t for t in table_names(rig.views) if t.endswith(SUFFIX)}
    assert rig.stored_positions(f"{name}#rebuild") == {}
    with rig.views.connect() as conn:
        state = conn.execute(
            select(projections.c.name, projections.c.status, projections.c.version).where(
                projections.c.name.like(f"{name}%")
            )
        ).all()
    assert {(r[0], r[2]) for r in state} == {(name, 1)}


def test_the_swap_waits_for_a_parking_batch_in_flight(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A live worker in park mode locks its projection's row before it touches
    its tables; the swap takes that row first, so neither waits for the other
    (on PostgreSQL, the other order ends in a deadlock and a retried batch).
    The batch it held open lands in the old table: idle after the swap, the
    worker notices the swapped-in positions and applies it again."""
    name = unique("rb_parking")
    armed, entered, gate = threading.Event(), threading.Event(), threading.Event()

    def hold_the_batch(_self: object) -> None:
        # Before the handler reads or writes a table: only the row lock is held.
        if armed.is_set() and not gate.is_set():
            entered.set()
            gate.wait(30)

    Totals = wallet_totals(rig.context, name, on_failure="park", _pace=hold_the_batch)
    writer = Writer(rig.store, seed=3)
    head = writer.populate(wallets=20, deposits=200)
    rig.start_relay()
    live_stop = threading.Event()
    live = live_worker(rig, Totals, live_stop)
    rig.wait(Totals, head)

    def before_swap() -> None:
        armed.set()
        writer.step()  # the live worker's next batch stops in its handler
        assert entered.wait(30), "the live worker never took the new event"
        threading.Timer(1.5, gate.set).start()  # longer than PostgreSQL's deadlock_timeout

    caplog.set_level("WARNING")
    rebuild(Totals, rig.log(), engine=rig.views, batch_size=100, before_swap=before_swap)
    gate.set()
    rig.wait(Totals, writer.position)
    live_stop.set()
    live.join()

    assert view_rows(rig) == fold_wallets(rig.records())
    trouble = [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage().lower()]
    assert trouble == []


def test_version_bump_needs_a_rebuild_and_stops_the_old_worker(rig: Rig) -> None:
    name = unique("rb_versioned")
    V1 = wallet_totals(rig.context, name)
    V2 = wallet_totals_v2(rig.context, name)
    writer = Writer(rig.store, seed=2)
    head = writer.populate(wallets=30, deposits=400)
    rig.start_relay()
    old_stop = threading.Event()
    old = live_worker(rig, V1, old_stop)
    rig.wait(V1, head)

    # 1. The new code refuses to run against the old view.
    new_worker = Worker(V2(), rig.log(), engine=rig.views)
    with pytest.raises(ProjectionVersionMismatch) as refused:
        new_worker.start()
    assert (refused.value.stored, refused.value.declared) == (1, 2)

    # 2. Rebuilt while the old worker runs; then events keep coming.
    rebuild(V2, rig.log(), engine=rig.views, batch_size=200)
    for _ in range(10):
        writer.step()

    # 3. The old worker stops at its next batch; it wrote nothing, parked nothing.
    with pytest.raises(ProjectionVersionMismatch) as stopped:
        old.join(timeout=60)
    assert (stopped.value.stored, stopped.value.declared) == (2, 1)
    with rig.views.connect() as conn:
        letters = conn.execute(select(dead_letters.c.id).where(dead_letters.c.projection == name))
        assert letters.all() == []
        status = conn.execute(
            select(projections.c.status, projections.c.version).where(projections.c.name == name)
        ).one()
    assert status.version == 2
    assert status.status != "failed"

    # 4. The new version runs and catches up.
    new_stop = threading.Event()
    new = Background(
        lambda: Worker(V2(), rig.log(), engine=rig.views, batch_size=100).run(stop=new_stop),
        "v2",
    )
    rig.wait(V2, writer.position)
    new_stop.set()
    new.join()
    assert view_rows(rig) == fold_wallets(rig.records(), with_largest=True)


def index_names(engine: Engine) -> set[tuple[str, str]]:
    """`(table, index)` of every index on the view tables, primary keys included."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT tablename, indexname FROM pg_indexes"
                    " WHERE schemaname = current_schema() AND tablename LIKE 'rb_%'"
                )
            ).all()
        else:
            rows = conn.execute(
                text(
                    "SELECT tbl_name, name FROM sqlite_master"
                    " WHERE type = 'index' AND tbl_name LIKE 'rb_%'"
                )
            ).all()
    return {(r[0], r[1]) for r in rows}


def test_indexes_keep_their_names_over_successive_rebuilds(
    backend: str, database_url_factory: Callable[..., str]
) -> None:
    source = EventStore(database_url_factory("sqlite"), context=unique("rbsrc"))
    source.create_schema()
    views = EventStore(database_url_factory(backend), context=unique("rbviews"))
    views.create_schema()
    try:
        Totals = wallet_totals(source.context, unique("rb_indexed"))
        writer = Writer(source, seed=3)
        writer.populate(wallets=20, deposits=200)
        log = SqlLogConsumer({source.context: source})
        Worker(Totals(), log, engine=views.engine).run(until_caught_up=True)
        declared = index_names(views.engine)
        assert ("rb_wallets", "rb_wallets_owner_idx") in declared
        assert ("rb_wallets", "rb_wallets_owner_total_idx") in declared

        for round_ in range(2):
            for _ in range(5):
                writer.step()
            rebuild(Totals, SqlLogConsumer({source.context: source}), engine=views.engine)
            assert index_names(views.engine) == declared, f"after rebuild {round_ + 1}"
            assert _rows(views.engine) == fold_wallets(source.read_log(0, 100_000))
        # The indexes are real: the planner can still use the declared one by name.
        with views.engine.connect() as conn:
            if backend == "postgres":
                conn.execute(text('REINDEX INDEX "rb_wallets_owner_idx"'))
            else:
                conn.execute(text('REINDEX "rb_wallets_owner_idx"'))
    finally:
        source.close()
        views.close()


def _rows(engine: Engine) -> tuple[dict[str, Any], dict[str, Any]]:
    with engine.connect() as conn:
        wallets = conn.execute(text("SELECT * FROM rb_wallets")).mappings().all()
        owners = conn.execute(text("SELECT * FROM rb_owners")).mappings().all()
    return (
        {
            r["wallet"]: {k: (int(v) if k != "owner" else v) for k, v in r.items() if k != "wallet"}
            for r in wallets
        },
        {r["owner"]: {k: int(v) for k, v in r.items() if k != "owner"} for r in owners},
    )


def test_rebuild_refuses_a_reactor(tmp_path: Any) -> None:
    from eventsource.errors import ConfigurationError
    from tests.projections.apps_rebuild import expire_unpaid

    store = EventStore(f"sqlite:///{tmp_path / 'r.db'}", context="rbreact")
    try:
        with pytest.raises(ConfigurationError, match="reactor"):
            rebuild(
                expire_unpaid("rbreact", unique("rb_reactor")),
                SqlLogConsumer({"rbreact": store}),
                store=store,
            )
    finally:
        store.close()
