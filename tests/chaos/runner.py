"""Faults while everything runs: PostgreSQL crash-restarted, the broker killed and
restarted, the relay and a worker SIGKILLed and started again.

Two writer threads save deposits to accounts in a PostgreSQL store; the
relay (`eventsource relay run`) publishes them to Kafka; two workers
(`eventsource projection run`) fold them into a PostgreSQL view. Faults come
one after another. At the end the writers stop, everything catches up, and
the run passes only if:

* no process exited by itself (only the ones the run killed stopped);
* every save that was acknowledged is stored;
* the view equals an independent fold of the stored events (plain SQL);
* the topic holds each stored event exactly once, in order.

It also measures, for each fault, the stall: from the moment the fault is
over (the service is back, the process started again) to the view's next
progress.

    scripts/chaos.sh --seconds 600          # the long run, with a summary
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from eventsource import EventStore, Repository
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.errors import ConcurrencyError, StoreUnavailable
from eventsource.projections.status import events_behind
from tests.bus.model import judge, read_committed
from tests.conftest import services
from tests.projections.apps import PjAccount
from tests.projections.streams import (
    WorkerProcess,
    assert_view_is_fold,
    progress,
    read_events_sql,
)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.projections.apps:EnvBalances"
KINDS = ("postgres", "broker", "relay", "worker")


@dataclass
class Fault:
    kind: str
    started: float  # seconds into the run
    over: float = 0.0  # when the service was back / the process started again
    stall: float | None = None  # from `over` to the view's next progress


@dataclass
class Outcome:
    seconds: float
    faults: list[Fault]
    saves: int
    events: int
    unexpected_exits: list[str]
    writer_errors: list[str]
    missing_saves: int
    view_is_fold: bool
    exactly_once: bool
    verdict: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            not self.unexpected_exits
            and not self.writer_errors
            and self.missing_saves == 0
            and self.view_is_fold
            and self.exactly_once
        )

    def summary(self) -> str:
        lines = [
            f"chaos: {self.seconds:.0f} s, {len(self.faults)} faults, {self.saves} saves,"
            f" {self.events} events",
        ]
        for kind in KINDS:
            stalls = [f.stall for f in self.faults if f.kind == kind and f.stall is not None]
            count = sum(f.kind == kind for f in self.faults)
            if count:
                shown = ", ".join(f"{s:.1f}" for s in stalls) or "-"
                lines.append(f"  {kind:9} x{count}: stall after it (s): {shown}")
        lines.append(f"  processes that exited by themselves: {self.unexpected_exits or 'none'}")
        lines.append(f"  saves that failed other than as an outage: {self.writer_errors or 'none'}")
        lines.append(f"  acknowledged saves missing: {self.missing_saves}")
        lines.append(f"  view equals the independent fold: {self.view_is_fold}")
        lines.append(f"  topic holds each event exactly once: {self.exactly_once}")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


class Chaos:
    """One run: the databases, topics and processes it made, and its faults."""

    def __init__(self, *, servers: str, admin_url: str, workdir: Path, seed: int) -> None:
        self.servers = servers
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.context = f"chaos{uuid.uuid4().hex[:8]}"
        self.name = f"chaos_view_{uuid.uuid4().hex[:8]}"
        admin = make_url(admin_url).set(drivername="postgresql+psycopg")
        # pool_pre_ping: the server restarts under it.
        self.admin = sa.create_engine(admin, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.databases = [f"es_chaos_{uuid.uuid4().hex[:10]}" for _ in range(2)]
        with self.admin.connect() as conn:
            for database in self.databases:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        source, views = (
            admin.set(database=d).render_as_string(hide_password=False) for d in self.databases
        )
        self.source_url, self.views_url = source, views
        self.store = EventStore(source, context=self.context)
        self.store.create_schema()
        self.views = sa.create_engine(make_url(views), pool_pre_ping=True)
        self.kafka = KafkaConfig(servers, partitions=6)
        self.processes: dict[str, WorkerProcess] = {}
        self.killed: set[int] = set()
        self.acknowledged: list[str] = []  # event ids of saves that returned
        self.saves = 0
        self.writer_errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: list[tuple[float, int]] = []
        self._started = time.monotonic()

    # -- the processes ---------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
        env.update(
            PYTHONPATH=str(ROOT),
            EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS=self.servers,
            EVENTSOURCE_TOPIC_PARTITIONS="6",
            PJTEST_CONTEXT=self.context,
            PJTEST_NAME=self.name,
        )
        env.update(extra)
        return env

    def start(self, role: str) -> None:
        log = self.workdir / f"{role}.log"
        if role == "relay":
            args = ["relay", "run", "--batch-size", "500"]
            env = self.env(
                EVENTSOURCE_DATABASE_URL=self.source_url, EVENTSOURCE_CONTEXT=self.context
            )
        else:
            args = ["projection", "run", APP, "--batch-size", "200"]
            env = self.env(
                EVENTSOURCE_DATABASE_URL=self.views_url,
                EVENTSOURCE_CONTEXT="chaosviews",
                EVENTSOURCE_WORKER_NAME=f"{self.name}-{role}",
                PJTEST_WORKER=role,
            )
        self.processes[role] = WorkerProcess(args, env, log)

    def kill(self, role: str) -> None:
        process = self.processes[role]
        self.killed.add(process.pid)
        process.kill()

    def unexpected_exits(self) -> list[str]:
        return [
            f"{role} (pid {p.pid}, status {p.process.returncode})"
            for role, p in self.processes.items()
            if not p.alive() and p.pid not in self.killed
        ]

    # -- the writers and the watch ---------------------------------------------

    def write(self, index: int) -> None:
        repository = Repository(self.store, PjAccount)
        accounts = [f"w{index}-{i}" for i in range(40)]
        opened: set[str] = set()
        while not self._stop.is_set():
            account_id = self.rng.choice(accounts)
            try:
                if account_id in opened:
                    account = repository.get(account_id)
                else:
                    account = PjAccount.open(account_id, f"owner-{index}")
                account.deposit(self.rng.randint(1, 50))
                ids = [str(e.event_id) for e in account.pending_events]
                repository.save(account)
            except (StoreUnavailable, ConcurrencyError):
                time.sleep(0.2)  # the database is away: nothing acknowledged, try again
                continue
            except Exception as exc:
                # Anything else from a save during an outage is a bug to report.
                with self._lock:
                    self.writer_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.2)
                continue
            opened.add(account_id)
            with self._lock:
                self.acknowledged.extend(ids)
                self.saves += 1
            time.sleep(0.02)

    def watch(self) -> None:
        while not self._stop.is_set():
            try:
                value = progress(self.views, self.name)
            except Exception:
                value = -1  # the database is away
            self._progress.append((time.monotonic(), value))
            time.sleep(0.25)

    def stall_after(self, moment: float, limit: float = 60.0) -> float | None:
        """Seconds from `moment` until the view's progress next grew."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = [v for t, v in self._progress if t <= moment and v >= 0]
            after = [(t, v) for t, v in self._progress if t > moment and v >= 0]
            base = before[-1] if before else 0
            for t, v in after:
                if v > base:
                    return t - moment
            time.sleep(0.25)
        return None

    # -- the faults --------------------------------------------------------------

    def fault(self, kind: str) -> Fault:
        fault = Fault(kind, time.monotonic() - self._started)
        if kind == "postgres":
            services("pg-crash")
            time.sleep(self.rng.uniform(2, 5))
            services("pg-start")
        elif kind == "broker":
            services("kafka-kill")
            time.sleep(self.rng.uniform(2, 5))
            services("kafka-start")
        elif kind == "relay":
            self.kill("relay")
            time.sleep(self.rng.uniform(0.5, 2))
            self.start("relay")
        else:
            role = self.rng.choice(["worker-1", "worker-2"])
            self.kill(role)
            time.sleep(self.rng.uniform(0.5, 2))
            self.start(role)
        fault.over = time.monotonic() - self._started
        return fault

    # -- the run -----------------------------------------------------------------

    def run(self, seconds: float, plan: list[str] | None = None) -> Outcome:
        for role in ("relay", "worker-1", "worker-2"):
            self.start(role)
        threads = [threading.Thread(target=self.write, args=(i,), daemon=True) for i in range(2)]
        threads.append(threading.Thread(target=self.watch, daemon=True))
        for thread in threads:
            thread.start()
        faults: list[Fault] = []
        kinds = list(plan or [])
        end = self._started + seconds
        time.sleep(min(6.0, seconds / 8))
        # A plan runs each of its faults, whatever the time; else faults come
        # at random until the time is nearly up.
        while kinds or (plan is None and time.monotonic() < end - 8):
            kind = kinds.pop(0) if kinds else self.rng.choice(KINDS)
            faults.append(self.fault(kind))
            faults[-1].stall = self.stall_after(self._started + faults[-1].over)
            time.sleep(self.rng.uniform(2, 4) if plan else self.rng.uniform(3, 8))
        while time.monotonic() < end:
            time.sleep(0.5)
        exits = self.unexpected_exits()
        self._stop.set()
        for thread in threads:
            thread.join(30)
        return self.verdict(seconds, faults, exits)

    def verdict(self, seconds: float, faults: list[Fault], exits: list[str]) -> Outcome:
        records = read_events_sql(self.store.engine)
        stored_ids = self.stored_event_ids()
        missing = [e for e in self.acknowledged if e not in stored_ids]
        self.wait_until_applied()
        exits += [e for e in self.unexpected_exits() if e not in exits]
        try:
            assert_view_is_fold(self.views, records)
            folded = True
        except AssertionError:
            folded = False
        topic = f"{self.context}.account"
        delivered = read_committed(self.servers, [topic])
        verdict = judge(self.store.read_log(0, 10_000_000), delivered)
        return Outcome(
            seconds=seconds,
            faults=faults,
            saves=self.saves,
            events=len(records),
            unexpected_exits=exits,
            writer_errors=sorted(set(self.writer_errors)),
            missing_saves=len(missing),
            view_is_fold=folded,
            exactly_once=verdict.exactly_once,
            verdict=asdict(verdict) if not verdict.exactly_once else {},
        )

    def stored_event_ids(self) -> set[str]:
        with self.store.engine.connect() as conn:
            return {str(r[0]) for r in conn.exec_driver_sql("SELECT event_id FROM events")}

    def wait_until_applied(self, timeout: float = 180.0) -> None:
        """Until the workers have applied every stored event (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.views.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT partition, last_position FROM projection_positions"
                    " WHERE projection = %(name)s",
                    {"name": self.name},
                ).all()
            applied = {int(p): int(last) for p, last in rows}
            if len(applied) == 6:
                behind = events_behind(self.store, "account", applied, partitions=6)
                if sum(behind.values()) == 0:
                    return
            time.sleep(0.5)

    def close(self) -> None:
        for role, process in self.processes.items():
            if process.alive():
                process.terminate()
                try:
                    process.wait(30)
                except AssertionError:
                    print(f"{role} did not stop on SIGTERM", file=sys.stderr)
        self.store.close()
        self.views.dispose()
        admin = TopicAdmin(self.kafka)
        admin.delete(admin.list_topics(f"{self.context}."))
        with self.admin.connect() as conn:
            for database in self.databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.admin.dispose()


def run_chaos(
    seconds: float,
    *,
    servers: str,
    admin_url: str,
    workdir: Path,
    seed: int | None = None,
    plan: list[str] | None = None,
    report: Callable[[str], None] = print,
) -> Outcome:
    seed = seed if seed is not None else random.randrange(1 << 30)
    report(f"chaos: seed {seed}, logs in {workdir}")
    chaos = Chaos(servers=servers, admin_url=admin_url, workdir=workdir, seed=seed)
    try:
        outcome = chaos.run(seconds, plan)
    finally:
        chaos.close()
    report(outcome.summary())
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the outcome here")
    args = parser.parse_args(argv)
    # Importing the tests' modules moved the services' URLs to TEST_SERVICES_*
    # (tests/conftest.py), so that no test process inherits EVENTSOURCE_* settings.
    servers = os.environ.get("TEST_SERVICES_KAFKA_BOOTSTRAP_SERVERS", "")
    admin_url = os.environ.get("TEST_SERVICES_DATABASE_URL", "")
    if not servers or not admin_url:
        print('set the services\' variables first: eval "$(scripts/services.sh env)"')
        return 2
    workdir = args.workdir or Path(f"/tmp/eventsource-chaos-{uuid.uuid4().hex[:8]}")
    workdir.mkdir(parents=True, exist_ok=True)
    outcome = run_chaos(
        args.seconds, servers=servers, admin_url=admin_url, workdir=workdir, seed=args.seed
    )
    if args.json:
        args.json.write_text(json.dumps({**asdict(outcome), "passed": outcome.passed}, indent=2))
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
