"""Streams of account events, their independent fold, and worker processes.

`fold` computes what the `Balances` view must hold straight from the stored
rows (payloads parsed with orjson, no codec, no projection code), so the
tests judge the workers from outside.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from eventsource import EventStore, Repository, StoredEvent
from eventsource.projections.positions import all_positions
from eventsource.projections.tables import positions, projections
from tests.conftest import ROOT
from tests.projections.apps import (
    LARGE,
    PjAccount,
    balances_table,
    owners_table,
    workers_table,
)


def populate(
    store: EventStore,
    *,
    events: int,
    accounts: int = 100,
    owners: int = 7,
    seed: int = 1,
    prefix: str = "a",
    chunk: int = 500,
) -> int:
    """Open `accounts` accounts and record about `events` events on them, saved
    `chunk` events per transaction so that accounts interleave in the log;
    a few accounts are closed at the end. Returns how many events were stored."""
    rng = random.Random(seed)
    repo = Repository(store, PjAccount)
    opened = [PjAccount.open(f"{prefix}-{i}", f"owner-{i % owners}") for i in range(accounts)]
    written = _save_in_chunks(repo, opened, chunk)
    live = list(opened)
    closing = set(rng.sample(range(accounts), k=accounts // 20))
    remaining = max(0, events - accounts - len(closing))
    touched: dict[str, PjAccount] = {}
    pending = 0
    for _ in range(remaining):
        account = rng.choice(live)
        roll = rng.random()
        if roll < 0.6:
            account.deposit(rng.randint(1, 100))
        elif roll < 0.9:
            account.withdraw(rng.randint(1, 30))
        else:
            account.note(f"note {rng.randint(0, 999)}")
        touched[account.id] = account
        pending += 1
        if pending >= chunk:
            written += _save_in_chunks(repo, list(touched.values()), chunk)
            touched.clear()
            pending = 0
    written += _save_in_chunks(repo, list(touched.values()), chunk)
    doomed = [live[i] for i in sorted(closing)]
    for account in doomed:
        account.close()
    written += _save_in_chunks(repo, doomed, chunk)
    return written


def _save_in_chunks(repo: Repository[PjAccount], aggregates: list[PjAccount], chunk: int) -> int:
    written = 0
    batch: list[PjAccount] = []
    count = 0
    for aggregate in aggregates:
        batch.append(aggregate)
        count += len(aggregate.pending_events)
        if count >= chunk:
            repo.save(*batch)
            written += count
            batch, count = [], 0
    if batch:
        repo.save(*batch)
        written += count
    return written


def read_all(store: EventStore) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    after = 0
    while True:
        page = store.read_log(after, 10_000)
        if not page:
            return out
        out.extend(page)
        after = page[-1].position


@dataclass(frozen=True)
class RawEvent:
    """A stored event as the oracle reads it: straight from the table, no framework code."""

    position: int
    aggregate_type: str
    aggregate_id: str
    event_type: str
    version: int
    payload: str


def read_events_sql(engine: Engine) -> list[RawEvent]:
    """Every row of `events` in position order, read with plain SQL (not `read_log`)."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT global_position, aggregate_type, aggregate_id, event_type, version, payload"
            " FROM events ORDER BY global_position"
        ).all()
    return [
        RawEvent(
            int(r[0]),
            r[1],
            r[2],
            r[3],
            int(r[4]),
            r[5] if isinstance(r[5], str) else orjson.dumps(r[5]).decode(),
        )
        for r in rows
    ]


@dataclass
class Fold:
    """What the `Balances` view holds after applying `records` exactly once."""

    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    handled: int = 0


def fold(records: list[StoredEvent] | list[RawEvent]) -> Fold:
    out = Fold()
    for record in records:
        if record.aggregate_type != "account":
            continue
        data = orjson.loads(record.payload)
        account = record.aggregate_id
        kind = record.event_type
        if kind == "pj.noted":
            continue
        out.handled += 1
        if kind == "pj.account_opened":
            out.balances[account] = {
                "owner": data["owner"],
                "events": 1,
                "total": 0,
                "last_version": record.version,
            }
            owner = out.owners.setdefault(data["owner"], {"accounts": 0, "deposits": 0})
            owner["accounts"] += 1
            continue
        row = out.balances[account]
        if kind == "pj.account_closed":
            del out.balances[account]
            out.owners[row["owner"]]["accounts"] -= 1
            continue
        sign = 1 if kind == "pj.deposited" else -1
        row["events"] += 1
        row["total"] += sign * data["amount"]
        row["last_version"] = record.version
        if kind == "pj.deposited":
            out.owners[row["owner"]]["deposits"] += data["amount"]
    return out


def view_state(engine: Engine) -> Fold:
    """What the `Balances` tables hold."""
    out = Fold()
    with engine.connect() as conn:
        for row in conn.execute(select(balances_table)).mappings():
            out.balances[row["account"]] = {
                "owner": row["owner"],
                "events": row["events"],
                "total": row["total"],
                "last_version": row["last_version"],
            }
        for row in conn.execute(select(owners_table)).mappings():
            out.owners[row["owner"]] = {"accounts": row["accounts"], "deposits": row["deposits"]}
    return out


def assert_view_is_fold(engine: Engine, records: list[StoredEvent] | list[RawEvent]) -> None:
    """The view equals the fold of `records`: every row, and the counts and sums."""
    expected = fold(records)
    actual = view_state(engine)
    assert sum(r["events"] for r in actual.balances.values()) == sum(
        r["events"] for r in expected.balances.values()
    )
    assert sum(r["total"] for r in actual.balances.values()) == sum(
        r["total"] for r in expected.balances.values()
    )
    assert sum(o["deposits"] for o in actual.owners.values()) == sum(
        o["deposits"] for o in expected.owners.values()
    )
    assert actual.balances == expected.balances
    assert actual.owners == expected.owners


def worker_counts(engine: Engine) -> dict[str, int]:
    """Events applied per worker process (`pj_workers`), as committed."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, workers_table.name):
            return {}
        return {r[0]: int(r[1]) for r in conn.execute(select(workers_table))}


def stored_positions(engine: Engine, name: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """`(topic, partition) -> (offset, last_position, revision)` as committed."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, positions.name):
            return {}
        stored = all_positions(conn, name)
    return {
        (tp.topic, tp.partition): (p.offset, p.last_position, p.revision)
        for tp, p in stored.items()
    }


def progress(engine: Engine, name: str) -> int:
    """A number that grows with every committed batch of `name` (its revisions)."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, positions.name):
            return 0
        total = conn.execute(
            select(func.coalesce(func.sum(positions.c.revision), 0)).where(
                positions.c.projection == name
            )
        ).scalar_one()
        return int(total)


def consumer_state(engine: Engine, name: str) -> dict[str, Any] | None:
    """The `projections` row of `name` (status, version, last error), if any."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, projections.name):
            return None
        row = conn.execute(select(projections).where(projections.c.name == name)).mappings()
        found = row.first()
        return dict(found) if found is not None else None


def reactions(store: EventStore) -> list[dict[str, Any]]:
    """Every `pj.flagged` event in a reactor's store, with its metadata."""
    out = []
    for record in read_all(store):
        if record.event_type != "pj.flagged":
            continue
        meta = orjson.loads(record.metadata)
        out.append(
            {
                "audit": record.aggregate_id,
                "version": record.version,
                "event_id": str(record.event_id),
                "causation_id": meta.get("causation_id"),
                "correlation_id": meta.get("correlation_id"),
                **orjson.loads(record.payload),
            }
        )
    return out


def large_deposits(records: list[StoredEvent]) -> dict[str, StoredEvent]:
    """The source deposits a reactor must react to, by event id."""
    return {
        str(r.event_id): r
        for r in records
        if r.event_type == "pj.deposited" and orjson.loads(r.payload)["amount"] >= LARGE
    }


def assert_reacted_exactly_once(records: list[StoredEvent], store: EventStore) -> None:
    """Each large deposit caused exactly one flag, and each audit counts its flags 1..n."""
    wanted = large_deposits(records)
    flags = reactions(store)
    causes = [f["causation_id"] for f in flags]
    assert len(causes) == len(set(causes)), "a deposit caused more than one reaction"
    assert set(causes) == set(wanted)
    by_audit: dict[str, list[dict[str, Any]]] = {}
    for flag in flags:
        source = wanted[flag["causation_id"]]
        assert flag["source_event"] == flag["causation_id"]
        assert flag["audit"] == source.aggregate_id
        assert flag["amount"] == orjson.loads(source.payload)["amount"]
        by_audit.setdefault(flag["audit"], []).append(flag)
    for audit, items in by_audit.items():
        items.sort(key=lambda f: f["version"])
        assert [f["seq"] for f in items] == list(range(1, len(items) + 1)), audit
        assert [f["version"] for f in items] == list(range(1, len(items) + 1)), audit


# -- worker processes ----------------------------------------------------------------------


class WorkerProcess:
    """`python -m eventsource projection run ...` with its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait/kill
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventsource", *args],
            cwd=ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def terminate(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"worker did not finish in {timeout} s:\n{self.output()}"
            ) from None
        self._log.close()
        return code

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any EVENTSOURCE_ or PJTEST_ variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PJTEST_"))}
    env.update(variables)
    return env


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def kill_repeatedly(
    make: Any,
    engine: Engine,
    name: str,
    *,
    kills: int,
    seed: int,
    max_delay: float = 0.1,
    top_up: Any = None,
) -> None:
    """Start a worker process with `make(i)` and SIGKILL it at a random moment
    after it committed at least one batch, `kills` times.

    `top_up()`, called before each start, may add events so that the stream
    outlasts the kills; a worker process that ends by itself fails the test.
    """
    rng = random.Random(seed)
    for i in range(kills):
        if top_up is not None:
            top_up()
        before = progress(engine, name)
        process: WorkerProcess = make(i)
        try:
            wait_until(
                lambda: progress(engine, name) > before or not process.alive(),  # noqa: B023
                90,
                f"worker {i} to commit a batch",
                interval=0.01,
            )
            time.sleep(rng.uniform(0, max_delay))
            assert process.alive(), f"worker {i} ended before it was killed:\n{process.output()}"
        finally:
            process.kill()


def topping_up(source: EventStore, engine: Engine, name: str, publish: Any, *, ahead: int) -> Any:
    """A `top_up` for `kill_repeatedly`: when the worker `name` has applied all
    but `ahead` events of `source`, record `ahead` more (and `publish()` them)."""
    rounds = [0]

    def top_up() -> None:
        # Offsets count the messages read (on Kafka also the relay's commit markers).
        read = sum(offset for offset, _, _ in stored_positions(engine, name).values())
        if source.head_position() - read < ahead:
            rounds[0] += 1
            populate(source, events=ahead, accounts=100, prefix=f"more{rounds[0]}", seed=rounds[0])
            publish()

    return top_up
