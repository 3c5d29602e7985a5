"""Tumbling windows by the event's own time, on SQLite and PostgreSQL views.

Attempts exactly on a window's start, a microsecond before it, across an
edge and written in other time zones land in the windows an independent
integer computation says; the seed's fraud query (cards with more than 3
authorization attempts in one 5-minute window) returns exactly the cards it
should; sums stay exact decimals; a rebuild produces the identical table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, MetaData, String, text

from eventsource import (
    Aggregate,
    Event,
    EventStore,
    Projection,
    Repository,
    View,
    Worker,
    handles,
    on,
)
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections.rebuild import rebuild
from eventsource.projections.windows import TumblingWindow
from tests.conftest import unique

FIVE_MINUTES = 300_000_000  # microseconds
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
metadata = MetaData()
attempts = TumblingWindow(
    "rb_card_windows",
    metadata,
    key=Column("card", String(32)),
    size=timedelta(minutes=5),
    sums=["amount"],
)


class RbAttempted(Event):
    event_type = "rb.authorization_attempted"

    at: datetime
    amount: Decimal


class RbCard(Aggregate, type_name="card"):
    attempts: int = 0

    def attempt(self, at: datetime, amount: Decimal) -> None:
        self.trigger(RbAttempted(at=at, amount=amount))

    @on(RbAttempted)
    def _attempted(self, event: RbAttempted) -> None:
        self.attempts += 1


class CardAttemptsBase(Projection):
    windows = attempts.table

    @handles(RbAttempted)
    def _attempted(self, event: RbAttempted, view: View) -> None:
        attempts.add(view, event.aggregate_id, event.at, amount=event.amount)


NOON = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)  # on a window boundary
KATHMANDU = ZoneInfo("Asia/Kathmandu")  # +05:45
ST_JOHNS = ZoneInfo("America/St_Johns")  # -02:30 in March 2024 (daylight time)
ATTEMPTS: list[tuple[str, datetime, str]] = [
    # Window edges.
    ("edge", NOON, "1.10"),  # exactly at a start: [12:00, 12:05)
    ("edge", NOON + timedelta(minutes=5) - timedelta(microseconds=1), "2.20"),  # still [12:00
    ("edge", NOON + timedelta(minutes=5), "3.30"),  # exactly at the next start: [12:05
    ("edge", NOON + timedelta(minutes=9, seconds=59, microseconds=999_999), "0.01"),
    ("edge", NOON - timedelta(microseconds=1), "100"),  # [11:55, 12:00)
    # Time zones: the same instants written in other zones.
    ("zones", datetime(2024, 3, 10, 13, 2, tzinfo=timezone(timedelta(hours=1))), "1"),  # 12:02
    ("zones", datetime(2024, 3, 10, 17, 49, 59, 999_999, tzinfo=KATHMANDU), "2"),  # 12:04:59.99
    ("zones", datetime(2024, 3, 10, 17, 50, tzinfo=KATHMANDU), "3"),  # 12:05:00
    ("zones", datetime(2024, 3, 10, 9, 37, tzinfo=ST_JOHNS), "4"),  # 12:07
    ("zones", datetime(2024, 3, 10, 7, 4, 59, tzinfo=timezone(timedelta(hours=-5))), "5"),
    # The fraud query. A: four in one window.
    *[("card-a", NOON + timedelta(minutes=10, seconds=s), "9.99") for s in (0, 60, 120, 299)],
    # B: four within 90 seconds, but two on each side of 12:15: no window has more than 3.
    *[
        ("card-b", NOON + timedelta(minutes=15) + delta, "5")
        for delta in (
            timedelta(seconds=-60),
            timedelta(microseconds=-1),
            timedelta(0),
            timedelta(seconds=30),
        )
    ],
    # C: exactly three in one window.
    *[("card-c", NOON + timedelta(minutes=20, seconds=s), "1") for s in (1, 2, 3)],
    # D: five, four of them in [12:20, 12:25).
    *[("card-d", NOON + timedelta(minutes=m), "2") for m in (20, 21, 22, 24.99, 25)],
    # E: four in [12:30, 12:35), each written in another time zone.
    ("card-e", datetime(2024, 3, 10, 12, 30, tzinfo=UTC), "1234567890123.4567891234"),
    ("card-e", datetime(2024, 3, 10, 18, 16, tzinfo=KATHMANDU), "0.0000000001"),
    ("card-e", datetime(2024, 3, 10, 10, 2, tzinfo=ST_JOHNS), "7"),
    ("card-e", datetime(2024, 3, 10, 13, 34, 59, tzinfo=timezone(timedelta(hours=1))), "8"),
    # F: four at the same time of day on four days.
    *[("card-f", NOON + timedelta(days=d, minutes=40), "1") for d in range(4)],
]
FRAUD = ["card-a", "card-d", "card-e"]


def expected_windows() -> dict[tuple[str, datetime], tuple[datetime, int, Decimal]]:
    """The windows, by integer microseconds since the epoch (no timedelta division)."""
    out: dict[tuple[str, datetime], tuple[datetime, int, Decimal]] = {}
    for card, at, amount in ATTEMPTS:
        micros = (at.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)
        start = EPOCH + timedelta(microseconds=micros - micros % FIVE_MINUTES)
        _, count, total = out.get((card, start), (start, 0, Decimal(0)))
        out[(card, start)] = (start + timedelta(minutes=5), count + 1, total + Decimal(amount))
    return out


def table_rows(engine: Any) -> dict[tuple[str, datetime], tuple[datetime, int, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(attempts.table.select()).mappings().all()
    return {
        (r["card"], _utc(r["window_start"])): (_utc(r["window_end"]), r["count"], r["amount"])
        for r in rows
    }


def _utc(value: datetime) -> datetime:
    # SQLite keeps no time zone (the framework writes UTC); PostgreSQL answers in its own.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@pytest.fixture
def stores(
    backend: str, database_url_factory: Callable[..., str]
) -> Iterator[tuple[EventStore, EventStore]]:
    source = EventStore(database_url_factory("sqlite"), context=unique("rbcards"))
    source.create_schema()
    views = EventStore(database_url_factory(backend), context=unique("rbviews"))
    views.create_schema()
    yield source, views
    source.close()
    views.close()


def test_windows_by_event_time_answer_the_fraud_query(
    stores: tuple[EventStore, EventStore],
) -> None:
    source, views = stores
    CardAttempts = type(
        "CardAttempts",
        (CardAttemptsBase,),
        {"name": unique("rb_cards"), "topics": [f"{source.context}.card"]},
    )
    cards: dict[str, RbCard] = {}
    repository = Repository(source, RbCard)
    for card, at, amount in ATTEMPTS:
        cards.setdefault(card, RbCard(card)).attempt(at, Decimal(amount))
    # Saved in two halves, folded in small batches, so that windows are
    # read back from the database as well as from the worker's cache.
    names = sorted(cards)
    repository.save(*[cards[c] for c in names[: len(names) // 2]])
    Worker(CardAttempts(), SqlLogConsumer({source.context: source}), engine=views.engine).run(
        until_caught_up=True
    )
    repository.save(*[cards[c] for c in names[len(names) // 2 :]])
    Worker(
        CardAttempts(),
        SqlLogConsumer({source.context: source}),
        engine=views.engine,
        batch_size=3,
        cache_rows=2,
    ).run(until_caught_up=True)

    built = table_rows(views.engine)
    assert built == expected_windows()
    assert built[("card-e", NOON + timedelta(minutes=30))][2] == Decimal("1234567890138.4567891235")
    with views.engine.connect() as conn:
        assert [r[0] for r in conn.execute(attempts.keys_with_more_than(3))] == FRAUD
        over = [(r[0], _utc(r[1]), r[3]) for r in conn.execute(attempts.windows_over(3))]
    assert over == [
        ("card-a", NOON + timedelta(minutes=10), 4),
        ("card-d", NOON + timedelta(minutes=20), 4),
        ("card-e", NOON + timedelta(minutes=30), 4),
    ]

    # Rebuilt from offset zero, later and in other batches: the identical table.
    log = SqlLogConsumer({source.context: source})
    rebuild(CardAttempts, log, engine=views.engine, batch_size=7)
    assert table_rows(views.engine) == built
    with views.engine.connect() as conn:
        raw = conn.execute(text("SELECT COUNT(*) FROM rb_card_windows")).scalar_one()
    assert raw == len(built)


def test_window_times_must_carry_a_time_zone() -> None:
    from eventsource.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="time-zone aware"):
        attempts.window_of(datetime(2024, 3, 10, 12, 0))  # naive: the point of the test
