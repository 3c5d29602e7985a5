"""`Repository` against every SQL backend: load, save, conflicts, limits, snapshots."""

from __future__ import annotations

import enum
import functools
import math
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from eventsource import (
    Aggregate,
    AggregateNotFound,
    ConcurrencyError,
    ConfigurationError,
    EncodeError,
    Event,
    EventTooLarge,
    InvalidAggregateId,
    Repository,
    on,
)
from eventsource.events import stream_id_for
from eventsource.store import EventStore
from tests.conftest import unique

# -- a small domain ------------------------------------------------------------


class RepoStatus(enum.Enum):
    ACTIVE = "active"
    FROZEN = "frozen"


class RepoEntry(BaseModel):
    label: str
    amount: Decimal
    version: int
    since: datetime | None


class RepoOpened(Event):
    event_type = "repo.opened"

    owner: str
    opened_at: datetime


class RepoDeposited(Event):
    event_type = "repo.deposited"

    amount: Decimal
    label: str = ""


class RepoWithdrawn(Event):
    event_type = "repo.withdrawn"

    amount: Decimal


class RepoRenamed(Event):
    event_type = "repo.renamed"

    owner: str


class RepoTagged(Event):
    event_type = "repo.tagged"

    tag: str
    weight: int


class RepoFrozen(Event):
    event_type = "repo.frozen"

    at: datetime


class RepoThawed(Event):
    event_type = "repo.thawed"


class RepoNoted(Event):
    event_type = "repo.noted"

    note: str


class RepoOverdrawn(Exception):
    pass


class RepoWallet(Aggregate):
    owner: str = ""
    opened_at: datetime | None = None
    balance: Decimal = Decimal("0.00")
    history: list[Decimal] = []
    tags: dict[str, int] = {}
    labels: set[str] = set()
    status: RepoStatus = RepoStatus.ACTIVE
    last: RepoEntry | None = None
    frozen_at: datetime | None = None

    @classmethod
    def open(cls, wallet_id: str, owner: str, at: datetime | None = None) -> RepoWallet:
        wallet = cls(wallet_id)
        wallet.trigger(RepoOpened(owner=owner, opened_at=at or datetime.now(UTC)))
        return wallet

    def deposit(self, amount: Decimal, label: str = "") -> None:
        self.trigger(RepoDeposited(amount=amount, label=label))

    def withdraw(self, amount: Decimal) -> None:
        if amount > self.balance:
            raise RepoOverdrawn(self.id)
        self.trigger(RepoWithdrawn(amount=amount))

    def rename(self, owner: str) -> None:
        self.trigger(RepoRenamed(owner=owner))

    def tag(self, tag: str, weight: int) -> None:
        self.trigger(RepoTagged(tag=tag, weight=weight))

    def freeze(self, at: datetime) -> None:
        self.trigger(RepoFrozen(at=at))

    def thaw(self) -> None:
        self.trigger(RepoThawed())

    @on(RepoOpened)
    def _opened(self, event: RepoOpened) -> None:
        self.owner = event.owner
        self.opened_at = event.opened_at

    @on(RepoDeposited)
    def _deposited(self, event: RepoDeposited) -> None:
        self.balance += event.amount
        self.history.append(event.amount)
        if event.label:
            self.labels.add(event.label)
        self.last = RepoEntry(
            label=event.label, amount=event.amount, version=event.version, since=self.opened_at
        )

    @on(RepoWithdrawn)
    def _withdrawn(self, event: RepoWithdrawn) -> None:
        self.balance -= event.amount
        self.history.append(-event.amount)

    @on(RepoRenamed)
    def _renamed(self, event: RepoRenamed) -> None:
        self.owner = event.owner

    @on(RepoTagged)
    def _tagged(self, event: RepoTagged) -> None:
        self.tags[event.tag] = self.tags.get(event.tag, 0) + event.weight

    @on(RepoFrozen)
    def _frozen(self, event: RepoFrozen) -> None:
        self.status = RepoStatus.FROZEN
        self.frozen_at = event.at

    @on(RepoThawed)
    def _thawed(self, event: RepoThawed) -> None:
        self.status = RepoStatus.ACTIVE

    @on(RepoNoted)
    def _noted(self, event: RepoNoted) -> None:
        pass


class RepoOtherWallet(Aggregate):
    """Another aggregate type: the same id is a different stream."""

    owner: str = ""

    @on(RepoOpened)
    def _opened(self, event: RepoOpened) -> None:
        self.owner = event.owner


# Handler calls per aggregate id, to see how many events a load replays.
APPLIED: Counter[str] = Counter()


class RepoCounted(Event):
    event_type = "repo.counted"

    amount: int


class RepoTally(Aggregate, type_name="repo_tally", snapshot_every=10):
    total: int = 0
    seen: list[int] = []

    @on(RepoCounted)
    def _counted(self, event: RepoCounted) -> None:
        APPLIED[self.id] += 1
        self.total += event.amount
        self.seen.append(event.version)


class RepoTallyDoubled(Aggregate, type_name="repo_tally", snapshot_version=2):
    """A new release of `RepoTally`: same state, different fold, so old snapshots are stale."""

    total: int = 0
    seen: list[int] = []

    @on(RepoCounted)
    def _counted(self, event: RepoCounted) -> None:
        APPLIED[self.id] += 1
        self.total += 2 * event.amount
        self.seen.append(event.version)


class RepoTallyWider(Aggregate, type_name="repo_tally"):
    """A new release of `RepoTally` with more state: the old snapshots lack it."""

    total: int = 0
    seen: list[int] = []
    largest: int = 0

    @on(RepoCounted)
    def _counted(self, event: RepoCounted) -> None:
        APPLIED[self.id] += 1
        self.total += event.amount
        self.seen.append(event.version)
        self.largest = max(self.largest, event.amount)


class RepoMeasured(Event):
    event_type = "repo.measured"

    reading: float
    raw: bytes


class RepoGauge(Aggregate, snapshot_every=3):
    reading: float = 0.0
    peak: float = -math.inf
    raw: bytes = b""
    readings: list[float] = []

    @on(RepoMeasured)
    def _measured(self, event: RepoMeasured) -> None:
        APPLIED[self.id] += 1
        self.reading = event.reading
        self.peak = max(self.peak, event.reading)
        self.raw += event.raw
        self.readings.append(event.reading)


class RepoSloppy(Aggregate, snapshot_every=2):
    """Sets an attribute it never declared, which a snapshot could not keep."""

    count: int = 0

    @on(RepoCounted)
    def _counted(self, event: RepoCounted) -> None:
        self.count += 1
        self.undeclared = event.amount


def state(aggregate: Aggregate) -> dict[str, Any]:
    """The aggregate's state in a form where equal means identical.

    Decimal("1.10") == Decimal("1.1") and datetimes in different zones compare
    equal, so compare their exact text instead.
    """
    return {
        "id": aggregate.id,
        "version": aggregate.version,
        **{k: canonical(v) for k, v in vars(aggregate).items() if not k.startswith("_es_")},
    }


@functools.singledispatch
def canonical(value: Any) -> Any:
    return (type(value).__name__, value)


@canonical.register
def _(value: Decimal) -> Any:
    return ("Decimal", str(value))


@canonical.register
def _(value: datetime) -> Any:
    return ("datetime", value.isoformat())


@canonical.register
def _(value: enum.Enum) -> Any:
    return (type(value).__name__, value.value)


@canonical.register
def _(value: BaseModel) -> Any:
    return (type(value).__name__, canonical(dict(value)))


@canonical.register
def _(value: dict) -> Any:  # type: ignore[type-arg]
    return {k: canonical(v) for k, v in value.items()}


@canonical.register(list)
@canonical.register(tuple)
def _(value: list[Any] | tuple[Any, ...]) -> Any:
    return [canonical(v) for v in value]


@canonical.register
def _(value: set) -> Any:  # type: ignore[type-arg]
    return ("set", sorted(canonical(v) for v in value))


def events_in(store: EventStore, aggregate_type: str, aggregate_id: str) -> list[Event]:
    stream_id = stream_id_for(aggregate_type, aggregate_id)
    return [store.codec.decode(r) for r in store.read_stream(stream_id)]


def snapshot_row(store: EventStore, stream_id: str) -> tuple[int, str, str] | None:
    return store.load_snapshot(stream_id)


# -- get, find, save -----------------------------------------------------------


def test_saved_aggregates_load_with_the_same_state(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallet = RepoWallet.open(
        "w-1", "ada", at=datetime(2024, 5, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    )
    wallet.deposit(Decimal("10.10"), label="salary")
    wallet.withdraw(Decimal("0.10"))
    wallet.tag("vip", 3)

    position = wallets.save(wallet)

    assert position == store.head_position()
    assert wallet.pending_events == ()
    assert wallet.version == 4
    loaded = wallets.get("w-1")
    assert type(loaded) is RepoWallet
    assert state(loaded) == state(wallet)
    assert loaded.pending_events == ()
    assert str(loaded.balance) == "10.00"


def test_loaded_aggregates_keep_working(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallets.save(RepoWallet.open("w-2", "bo"))
    wallet = wallets.get("w-2")
    wallet.deposit(Decimal(5))
    wallet.rename("bob")
    wallets.save(wallet)

    assert [e.version for e in events_in(store, "repo_wallet", "w-2")] == [1, 2, 3]
    assert state(wallets.get("w-2")) == state(wallet)


def test_stored_events_keep_their_metadata(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallet = RepoWallet.open("w-3", "cy")
    wallet.deposit(Decimal("1.5"))
    pending = wallet.pending_events
    wallets.save(wallet)

    stored = events_in(store, "repo_wallet", "w-3")
    assert [e.event_id for e in stored] == [e.event_id for e in pending]
    assert [e.occurred_at for e in stored] == [e.occurred_at for e in pending]
    assert all(e.occurred_at.utcoffset() == timedelta(0) for e in stored)
    assert [e.correlation_id for e in stored] == [e.correlation_id for e in pending]
    assert [e.model_dump(exclude={"position"}) for e in stored] == [
        e.model_dump(exclude={"position"}) for e in pending
    ]
    assert all(e.position > 0 for e in stored)


def test_get_of_an_unknown_id_is_aggregate_not_found(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    with pytest.raises(AggregateNotFound) as caught:
        wallets.get("nobody")
    assert (caught.value.aggregate_type, caught.value.aggregate_id) == ("repo_wallet", "nobody")
    assert isinstance(caught.value, LookupError)
    assert wallets.find("nobody") is None
    assert not wallets.exists("nobody")


def test_ids_are_scoped_by_aggregate_type(store: EventStore) -> None:
    Repository(store, RepoWallet).save(RepoWallet.open("shared-id", "wallet owner"))
    assert Repository(store, RepoWallet).exists("shared-id")
    assert not Repository(store, RepoOtherWallet).exists("shared-id")
    other = RepoOtherWallet("shared-id")
    other.trigger(RepoOpened(owner="other owner", opened_at=datetime.now(UTC)))
    Repository(store, RepoOtherWallet).save(other)
    assert Repository(store, RepoOtherWallet).get("shared-id").owner == "other owner"
    assert Repository(store, RepoWallet).get("shared-id").owner == "wallet owner"


def test_saving_nothing_pending_writes_nothing(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallets.save(RepoWallet.open("w-4", "di"))
    head = store.head_position()
    assert wallets.save(wallets.get("w-4")) == 0
    assert wallets.save() == 0
    assert store.head_position() == head


def test_save_of_several_aggregates_is_one_transaction(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    first, second = RepoWallet.open("w-5", "ed"), RepoWallet.open("w-6", "fa")
    second.deposit(Decimal(1))
    position = wallets.save(first, second)

    log = store.read_log()
    assert [(r.stream_id, r.version) for r in log] == [
        ("repo_wallet:w-5", 1),
        ("repo_wallet:w-6", 1),
        ("repo_wallet:w-6", 2),
    ]
    assert position == log[-1].position


def test_one_conflicting_aggregate_fails_the_whole_save(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallets.save(RepoWallet.open("w-7", "gi"))
    stale = wallets.get("w-7")
    winner = wallets.get("w-7")
    winner.deposit(Decimal(1))
    wallets.save(winner)
    head = store.head_position()
    log_before = store.read_log()

    fresh_a = RepoWallet.open("w-8", "ha")
    stale.deposit(Decimal(100))
    fresh_b = RepoWallet.open("w-9", "io")
    with pytest.raises(ConcurrencyError) as caught:
        wallets.save(fresh_a, stale, fresh_b)

    error = caught.value
    assert (error.stream_id, error.expected_version, error.actual_version) == (
        "repo_wallet:w-7",
        1,
        2,
    )
    assert "another writer saved first" in str(error)
    assert store.head_position() == head
    assert store.read_log() == log_before
    assert not wallets.exists("w-8")
    assert not wallets.exists("w-9")
    assert wallets.get("w-7").balance == Decimal(1)
    # Nothing was marked saved: the losing aggregates still hold their events.
    assert len(fresh_a.pending_events) == 1
    assert len(stale.pending_events) == 1


def test_a_stale_aggregate_is_a_concurrency_error_and_changes_nothing(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallet = RepoWallet.open("w-10", "jo")
    wallet.deposit(Decimal(3))
    wallets.save(wallet)
    first, second = wallets.get("w-10"), wallets.get("w-10")
    first.deposit(Decimal(1))
    first.deposit(Decimal(1))
    wallets.save(first)
    records_before = store.read_stream("repo_wallet:w-10")

    second.withdraw(Decimal(3))
    with pytest.raises(ConcurrencyError) as caught:
        wallets.save(second)
    assert (caught.value.expected_version, caught.value.actual_version) == (2, 4)
    assert store.read_stream("repo_wallet:w-10") == records_before

    # Reload and retry: the command now succeeds.
    retry = wallets.get("w-10")
    retry.withdraw(Decimal(3))
    wallets.save(retry)
    assert wallets.get("w-10").balance == Decimal(2)


def test_creating_an_aggregate_whose_id_exists_is_a_concurrency_error(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallets.save(RepoWallet.open("w-11", "ka"))
    with pytest.raises(ConcurrencyError) as caught:
        wallets.save(RepoWallet.open("w-11", "impostor"))
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert wallets.get("w-11").owner == "ka"


@pytest.mark.parametrize("bad_id", ["", "   ", "x" * 201, "nul\x00", "lone\udc80"])
def test_an_invalid_id_is_refused_and_changes_nothing(store: EventStore, bad_id: str) -> None:
    wallets = Repository(store, RepoWallet)
    with pytest.raises(InvalidAggregateId):
        RepoWallet.open(bad_id, "x")
    with pytest.raises(InvalidAggregateId):
        wallets.get(bad_id)
    with pytest.raises(InvalidAggregateId):
        wallets.find(bad_id)
    with pytest.raises(InvalidAggregateId):
        wallets.exists(bad_id)
    assert store.head_position() == 0


def test_unusual_but_valid_ids_round_trip(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    ids = ["é" * 200, "a:b:c", "with space", "emoji-😀", "'; drop table events; --", "%_"]
    for wallet_id in ids:
        wallets.save(RepoWallet.open(wallet_id, wallet_id))
    for wallet_id in ids:
        assert wallets.get(wallet_id).owner == wallet_id
    assert not wallets.exists("%")  # no LIKE matching anywhere


def test_an_event_above_max_event_bytes_is_refused_and_changes_nothing(store_factory) -> None:
    store = store_factory(max_event_bytes=300)
    wallets = Repository(store, RepoWallet)
    wallets.save(RepoWallet.open("w-12", "la"))
    head = store.head_position()

    small = RepoWallet.open("w-13", "ma")
    big = wallets.get("w-12")
    big.deposit(Decimal(1), label="€" * 100)  # 100 characters, 300 bytes
    with pytest.raises(EventTooLarge) as caught:
        wallets.save(small, big)

    error = caught.value
    assert (error.event_type, error.stream_id, error.limit) == (
        "repo.deposited",
        "repo_wallet:w-12",
        300,
    )
    assert error.size > 300
    assert store.head_position() == head
    assert not wallets.exists("w-13")
    assert wallets.get("w-12").version == 1
    assert len(small.pending_events) == 1


def test_an_event_that_cannot_be_serialised_is_an_encode_error(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet)
    wallet = RepoWallet.open("w-14", "na")
    wallet.trigger(RepoNoted(note="lone \udc80 surrogate"))
    with pytest.raises(EncodeError):
        wallets.save(wallet)
    assert store.head_position() == 0


def test_repository_needs_an_aggregate_class(store: EventStore) -> None:
    with pytest.raises(ConfigurationError):
        Repository(store, RepoEntry)  # type: ignore[type-var]
    with pytest.raises(ConfigurationError):
        Repository(store, RepoWallet, snapshot_every=0)


# -- snapshots -----------------------------------------------------------------


def tally_with(
    store: EventStore, aggregate_id: str, amounts: list[int], *, every: int | None
) -> RepoTally:
    """Save one event per save (so snapshots land on multiples of `every`)."""
    tallies = Repository(store, RepoTally, snapshot_every=every)
    tally = RepoTally(aggregate_id)
    for amount in amounts:
        tally.trigger(RepoCounted(amount=amount))
        tallies.save(tally)
    return tally


def test_snapshots_are_taken_every_n_events_and_loads_read_only_later_events(
    store: EventStore,
) -> None:
    tally_id = unique("tally")
    tally = tally_with(store, tally_id, list(range(1, 26)), every=10)
    stream_id = stream_id_for("repo_tally", tally_id)
    snapshot = snapshot_row(store, stream_id)
    assert snapshot is not None
    assert snapshot[0] == 20

    APPLIED[tally_id] = 0
    loaded = Repository(store, RepoTally).get(tally_id)
    assert APPLIED[tally_id] == 5  # events 21..25 only
    assert state(loaded) == state(tally)
    assert loaded.seen == list(range(1, 26))

    # The same repository without snapshots replays everything, to the same state.
    APPLIED[tally_id] = 0
    replayed = Repository(store, RepoTally)
    replayed.snapshot_every = None  # this repository neither reads nor takes snapshots
    assert state(replayed.get(tally_id)) == state(tally)
    assert APPLIED[tally_id] == 25


def test_a_save_crossing_a_multiple_of_n_snapshots_at_its_last_event(store: EventStore) -> None:
    tally_id = unique("tally")
    tallies = Repository(store, RepoTally)
    tally = RepoTally(tally_id)
    for amount in range(7):
        tally.trigger(RepoCounted(amount=amount))
    tallies.save(tally)
    assert snapshot_row(store, stream_id_for("repo_tally", tally_id)) is None
    for amount in range(6):
        tally.trigger(RepoCounted(amount=amount))
    tallies.save(tally)
    snapshot = snapshot_row(store, stream_id_for("repo_tally", tally_id))
    assert snapshot is not None
    assert snapshot[0] == 13

    APPLIED[tally_id] = 0
    assert state(tallies.get(tally_id)) == state(tally)
    assert APPLIED[tally_id] == 0


def test_a_snapshot_of_a_lost_save_is_not_kept(store: EventStore) -> None:
    tally_id = unique("tally")
    tallies = Repository(store, RepoTally)
    tally_with(store, tally_id, [1] * 9, every=10)
    stale, winner = tallies.get(tally_id), tallies.get(tally_id)
    winner.trigger(RepoCounted(amount=5))
    tallies.save(winner)
    stale.trigger(RepoCounted(amount=1000))
    with pytest.raises(ConcurrencyError):
        tallies.save(stale)
    assert tallies.get(tally_id).total == 14
    snapshot = snapshot_row(store, stream_id_for("repo_tally", tally_id))
    assert snapshot is not None
    assert '"total":14' in snapshot[2]


def test_snapshots_are_ignored_after_snapshot_version_changes(store: EventStore) -> None:
    tally_id = unique("tally")
    tally_with(store, tally_id, list(range(1, 13)), every=5)

    APPLIED[tally_id] = 0
    old = Repository(store, RepoTally).get(tally_id)
    assert APPLIED[tally_id] == 2  # from the snapshot at 10
    assert old.total == sum(range(1, 13))

    APPLIED[tally_id] = 0
    new = Repository(store, RepoTallyDoubled, snapshot_every=5).get(tally_id)
    assert APPLIED[tally_id] == 12  # the old snapshot is ignored: a full replay
    assert new.total == 2 * sum(range(1, 13))
    assert new.seen == list(range(1, 13))


def test_snapshots_are_ignored_when_the_state_changes_shape(store: EventStore) -> None:
    tally_id = unique("tally")
    tally_with(store, tally_id, [3, 9, 4, 1, 5, 2], every=5)

    APPLIED[tally_id] = 0
    wider = Repository(store, RepoTallyWider, snapshot_every=5).get(tally_id)
    assert APPLIED[tally_id] == 6
    assert (wider.total, wider.largest) == (24, 9)


def test_an_unreadable_snapshot_falls_back_to_replay(store: EventStore) -> None:
    tally_id = unique("tally")
    tally = tally_with(store, tally_id, list(range(12)), every=5)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE snapshots SET state = :state WHERE stream_id = :stream_id"),
            {
                "state": '{"total": "not a number"',
                "stream_id": stream_id_for("repo_tally", tally_id),
            },
        )
    APPLIED[tally_id] = 0
    assert state(Repository(store, RepoTally).get(tally_id)) == state(tally)
    assert APPLIED[tally_id] == 12


def test_snapshots_round_trip_rich_state(store: EventStore) -> None:
    wallets = Repository(store, RepoWallet, snapshot_every=2)
    wallet = RepoWallet.open(
        "w-15", "oz", at=datetime(2020, 2, 2, tzinfo=timezone(timedelta(hours=-9, minutes=-30)))
    )
    wallet.deposit(Decimal("0.10"), label="a")
    wallet.deposit(Decimal("2.500"), label="b")
    wallet.tag("x", -4)
    wallet.freeze(datetime(2021, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=13))))
    wallets.save(wallet)
    snapshot = snapshot_row(store, "repo_wallet:w-15")
    assert snapshot is not None
    assert snapshot[0] == 5

    loaded = wallets.get("w-15")
    assert state(loaded) == state(wallet)
    assert loaded.status is RepoStatus.FROZEN
    assert isinstance(loaded.last, RepoEntry)
    assert loaded.labels == {"a", "b"}
    # And it keeps working after a load from a snapshot.
    loaded.thaw()
    loaded.withdraw(Decimal("2.6"))
    wallets.save(loaded)
    assert state(Repository(store, RepoWallet).get("w-15")) == state(loaded)


def test_a_state_a_snapshot_cannot_hold_fails_the_save_and_records_nothing(
    store: EventStore,
) -> None:
    sloppy = RepoSloppy("s-1")
    sloppy.trigger(RepoCounted(amount=1))
    sloppy.trigger(RepoCounted(amount=2))
    with pytest.raises(ConfigurationError, match="undeclared"):
        Repository(store, RepoSloppy).save(sloppy)
    assert store.head_position() == 0
    assert store.load_snapshot("repo_sloppy:s-1") is None


def test_snapshots_round_trip_float_specials_and_bytes(store: EventStore) -> None:
    gauge_id = unique("gauge")
    gauges = Repository(store, RepoGauge)
    gauge = RepoGauge(gauge_id)
    for reading, raw in [(math.inf, b"\x00"), (-math.inf, b"\xff\xfe"), (1.5, b"+/=")]:
        gauge.trigger(RepoMeasured(reading=reading, raw=raw))
        gauges.save(gauge)
    gauge.trigger(RepoMeasured(reading=-2.0, raw=b""))
    gauges.save(gauge)
    snapshot = snapshot_row(store, stream_id_for("repo_gauge", gauge_id))
    assert snapshot is not None
    assert snapshot[0] == 3

    APPLIED[gauge_id] = 0
    loaded = gauges.get(gauge_id)
    assert APPLIED[gauge_id] == 1  # the snapshot was usable: only event 4 was replayed
    assert state(loaded) == state(gauge)
    assert loaded.peak == math.inf
    assert loaded.readings == [math.inf, -math.inf, 1.5, -2.0]
    assert loaded.raw == b"\x00\xff\xfe+/="


# -- property: any commands, any chunks, with or without snapshots -------------

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
owners = st.text(max_size=20)
offsets = st.integers(min_value=-(23 * 60), max_value=23 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
commands = st.one_of(
    st.tuples(st.just("deposit"), amounts, st.sampled_from(["", "rent", "pay", "ü"])),
    st.tuples(st.just("withdraw"), st.fractions(min_value=0, max_value=1)),
    st.tuples(st.just("rename"), owners),
    st.tuples(st.just("tag"), st.sampled_from(["a", "b", "ключ"]), st.integers(-(2**40), 2**40)),
    st.tuples(st.just("freeze"), moments),
    st.tuples(st.just("thaw")),
)


def run(wallet: RepoWallet, command: tuple[Any, ...]) -> None:
    """Apply a command if it is valid in the wallet's current state."""
    name, *args = command
    if name == "deposit":
        wallet.deposit(args[0], label=args[1])
    elif name == "withdraw":
        amount = (wallet.balance * args[0].numerator / args[0].denominator).quantize(
            Decimal("0.01")
        )
        if Decimal(0) < amount <= wallet.balance and wallet.status is RepoStatus.ACTIVE:
            wallet.withdraw(amount)
    elif name == "rename":
        wallet.rename(args[0])
    elif name == "tag":
        wallet.tag(args[0], args[1])
    elif name == "freeze" and wallet.status is RepoStatus.ACTIVE:
        wallet.freeze(args[0])
    elif name == "thaw" and wallet.status is RepoStatus.FROZEN:
        wallet.thaw()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owner=owners,
    opened_at=moments,
    plan=st.lists(st.tuples(st.lists(commands, max_size=6), st.booleans()), min_size=1, max_size=8),
    every=st.integers(min_value=1, max_value=5),
)
def test_any_commands_saved_in_any_chunks_reload_to_the_same_state(
    store: EventStore,
    owner: str,
    opened_at: datetime,
    plan: list[tuple[list[tuple[Any, ...]], bool]],
    every: int,
) -> None:
    wallet_id = unique("prop")  # a clean stream per example
    with_snapshots = Repository(store, RepoWallet, snapshot_every=every)
    without_snapshots = Repository(store, RepoWallet)

    model = RepoWallet.open(wallet_id, owner, at=opened_at)  # never saved: the reference
    current = RepoWallet.open(wallet_id, owner, at=opened_at)
    for chunk, reload in plan:
        for command in chunk:
            run(model, command)
            run(current, command)
        with_snapshots.save(current)
        if reload:
            current = with_snapshots.get(wallet_id)
        assert state(current) == state(model)

    assert state(with_snapshots.get(wallet_id)) == state(model)
    assert state(without_snapshots.get(wallet_id)) == state(model)
    versions = [r.version for r in store.read_stream(stream_id_for("repo_wallet", wallet_id))]
    assert versions == list(range(1, model.version + 1))
    snapshot = store.load_snapshot(stream_id_for("repo_wallet", wallet_id))
    if model.version >= every:
        assert snapshot is not None
        assert model.version - every < snapshot[0] <= model.version
    else:
        assert snapshot is None
