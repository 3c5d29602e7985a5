"""The domain and transforms that the stream tests run.

Accounts receive deposits and withdrawals (and notes, which no transform
reads). `movements` turns each deposit or withdrawal into a signed
`StMovement` (its `seq` is the input's version), drops amounts of 13, and
adds a `StLargeMovement` after each movement of 95 or more: a filter, a
map and a flat_map. `expected_outputs` computes what it must write straight
from the stored rows, without the transform's code.

Child processes import this module by path (`tests.streams.apps:movements`),
so it must not import `tests.conftest`; their topics and names come from
`STTEST_*` variables, so that each test reads and writes its own topics.
"""

from __future__ import annotations

import os

import orjson
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from eventsource import (
    Aggregate,
    Event,
    EventStore,
    Projection,
    Repository,
    StoredEvent,
    View,
    handles,
    on,
    stream,
)
from eventsource.streams import Transform

metadata = MetaData()

LARGE = 95
UNLUCKY = 13


class StDeposited(Event):
    event_type = "st.deposited"

    amount: int


class StWithdrawn(Event):
    event_type = "st.withdrawn"

    amount: int


class StNoted(Event):
    event_type = "st.noted"

    text: str


class StAccount(Aggregate, type_name="account"):
    balance: int = 0

    def deposit(self, amount: int) -> None:
        self.trigger(StDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        self.trigger(StWithdrawn(amount=amount))

    def note(self, text: str) -> None:
        self.trigger(StNoted(text=text))

    @on(StDeposited)
    def _deposited(self, event: StDeposited) -> None:
        self.balance += event.amount

    @on(StWithdrawn)
    def _withdrawn(self, event: StWithdrawn) -> None:
        self.balance -= event.amount

    @on(StNoted)
    def _noted(self, event: StNoted) -> None:
        pass


class StMovement(Event):
    event_type = "st.movement"

    amount: int
    seq: int


class StLargeMovement(Event):
    event_type = "st.large_movement"

    amount: int
    seq: int


def signed(event: StDeposited | StWithdrawn) -> StMovement:
    amount = event.amount if isinstance(event, StDeposited) else -event.amount
    return StMovement(amount=amount, seq=event.version)


def with_large(movement: StMovement) -> list[StMovement | StLargeMovement]:
    if abs(movement.amount) < LARGE:
        return [movement]
    return [movement, StLargeMovement(amount=movement.amount, seq=movement.seq)]


def movements_of(source: str, output: str, name: str | None = None) -> Transform:
    return (
        stream(source, StDeposited, StWithdrawn)
        .filter(lambda e: e.amount != UNLUCKY)
        .map(signed)
        .flat_map(with_large)
        .to(output, name=name)
    )


movements = movements_of(
    os.environ.get("STTEST_INPUT", "stsrc.account"),
    os.environ.get("STTEST_OUTPUT", "stsrc.movement"),
    os.environ.get("STTEST_NAME"),
)


def record_movements(store: EventStore, *, accounts: int, events: int, seed: int) -> int:
    """Record about `events` deposits, withdrawals and notes on `accounts`
    accounts, interleaved in the log, 200 events per save."""
    import random

    rng = random.Random(seed)
    repository = Repository(store, StAccount)
    loaded = {
        f"acc-{i}": repository.find(f"acc-{i}") or StAccount(f"acc-{i}") for i in range(accounts)
    }
    pending: dict[str, StAccount] = {}
    written = 0
    for _ in range(events):
        account = loaded[f"acc-{rng.randrange(accounts)}"]
        roll = rng.random()
        if roll < 0.55:
            account.deposit(rng.choice([UNLUCKY, LARGE, rng.randint(1, 120)]))
        elif roll < 0.9:
            account.withdraw(rng.randint(1, 100))
        else:
            account.note("note")
        pending[account.id] = account
        written += 1
        if written % 200 == 0:
            repository.save(*pending.values())
            pending.clear()
    if pending:
        repository.save(*pending.values())
    return written


def expected_outputs(records: list[StoredEvent]) -> dict[tuple[str, str], dict[str, object]]:
    """`(causation id, output type) -> {key, amount, seq}` that `movements` must
    write for `records`, computed from the stored rows alone."""
    out: dict[tuple[str, str], dict[str, object]] = {}
    for r in records:
        if r.event_type not in ("st.deposited", "st.withdrawn"):
            continue
        amount = orjson.loads(r.payload)["amount"]
        if amount == UNLUCKY:
            continue
        signed_amount = amount if r.event_type == "st.deposited" else -amount
        value = {"key": r.aggregate_id, "amount": signed_amount, "seq": r.version}
        out[str(r.event_id), "st.movement"] = value
        if abs(amount) >= LARGE:
            out[str(r.event_id), "st.large_movement"] = value
    return out


# -- a projection of the output topic -------------------------------------------------

totals_table = Table(
    "st_totals",
    metadata,
    Column("account", String(100), primary_key=True),
    Column("movements", Integer, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("large", Integer, nullable=False),
)


class Totals(Projection):
    """Folds the output of `movements` (topic from STTEST_OUTPUT)."""

    name = os.environ.get("STTEST_TOTALS", "st.totals")
    topics = [os.environ.get("STTEST_OUTPUT", "stsrc.movement")]
    totals = totals_table

    @handles(StMovement)
    def _moved(self, event: StMovement, view: View) -> None:
        view.increment(self.totals, event.aggregate_id, movements=1, total=event.amount, large=0)

    @handles(StLargeMovement)
    def _large(self, event: StLargeMovement, view: View) -> None:
        view.increment(self.totals, event.aggregate_id, movements=0, total=0, large=1)


def expected_totals(
    expected: dict[tuple[str, str], dict[str, object]],
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (_, kind), value in expected.items():
        row = out.setdefault(str(value["key"]), {"movements": 0, "total": 0, "large": 0})
        if kind == "st.movement":
            row["movements"] += 1
            row["total"] += int(value["amount"])  # type: ignore[call-overload]
        else:
            row["large"] += 1
    return out


def refuse_large(event: StDeposited) -> StMovement:
    if event.amount >= LARGE:
        raise ValueError(f"deposit of {event.amount} refused")
    return StMovement(amount=event.amount, seq=event.version)


# Parks the deposits it cannot turn into movements (on the embedded log, as
# a reactor's dead letters; on Kafka, on its dead-letter topic).
parking = (
    stream(os.environ.get("STTEST_INPUT", "stsrc.account"), StDeposited)
    .map(refuse_large)
    .to(
        os.environ.get("STTEST_OUTPUT", "stsrc.movement"),
        name=os.environ.get("STTEST_NAME"),
        on_failure="park",
    )
)
