"""The domain, projections and reactors that the projection tests run.

Accounts are opened, receive deposits and withdrawals, get notes (an event
type no consumer handles) and are closed. `Balances` folds them into two view
tables: one row per account (a count, a signed sum, the last version) and one
row per owner (a sum over many accounts, so over many partitions). `Audits`
is a reactor: every large deposit flags the account's `Audit` aggregate in
the reactor's own context.

Worker processes import `EnvBalances` and `EnvAudits` by path
(`tests.projections.apps:EnvBalances`); their topics and names come from
`PJTEST_*` environment variables, so that each test reads its own topics.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table
from sqlalchemy import event as sqlalchemy_event

from eventsource import Aggregate, Event, Projection, Reaction, Reactor, View, handles, on

metadata = MetaData()

# -- events and aggregates -----------------------------------------------------------


class PjOpened(Event):
    event_type = "pj.account_opened"

    owner: str


class PjDeposited(Event):
    event_type = "pj.deposited"

    amount: int


class PjWithdrawn(Event):
    event_type = "pj.withdrawn"

    amount: int


class PjNoted(Event):
    """Recorded on accounts but handled by no consumer."""

    event_type = "pj.noted"

    text: str


class PjClosed(Event):
    event_type = "pj.account_closed"


class PjAccount(Aggregate, type_name="account"):
    owner: str = ""
    balance: int = 0
    closed: bool = False

    @classmethod
    def open(cls, account_id: str, owner: str) -> PjAccount:
        account = cls(account_id)
        account.trigger(PjOpened(owner=owner))
        return account

    def reopen(self, owner: str) -> None:
        self.trigger(PjOpened(owner=owner))

    def deposit(self, amount: int) -> None:
        self.trigger(PjDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        self.trigger(PjWithdrawn(amount=amount))

    def note(self, text: str) -> None:
        self.trigger(PjNoted(text=text))

    def close(self) -> None:
        self.trigger(PjClosed())

    @on(PjOpened)
    def _opened(self, event: PjOpened) -> None:
        self.owner = event.owner
        self.closed = False

    @on(PjDeposited)
    def _deposited(self, event: PjDeposited) -> None:
        self.balance += event.amount

    @on(PjWithdrawn)
    def _withdrawn(self, event: PjWithdrawn) -> None:
        self.balance -= event.amount

    @on(PjNoted)
    def _noted(self, event: PjNoted) -> None:
        pass

    @on(PjClosed)
    def _closed(self, event: PjClosed) -> None:
        self.closed = True


class PjFlagged(Event):
    """A reactor's reaction to a large deposit: `seq` counts the audit's flags."""

    event_type = "pj.flagged"

    source_event: str
    amount: int
    seq: int


class PjAudit(Aggregate, type_name="audit"):
    """Lives in the reactor's own context, one per account."""

    flags: int = 0

    def flag(self, source_event: str, amount: int) -> None:
        self.trigger(PjFlagged(source_event=source_event, amount=amount, seq=self.flags + 1))

    @on(PjFlagged)
    def _flagged(self, event: PjFlagged) -> None:
        self.flags = event.seq


# -- the projection -------------------------------------------------------------------

balances_table = Table(
    "pj_balances",
    metadata,
    Column("account", String(100), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("events", Integer, nullable=False, default=0),
    Column("total", BigInteger, nullable=False, default=0),
    Column("last_version", Integer, nullable=False, default=0),
)
owners_table = Table(
    "pj_owners",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("accounts", Integer, nullable=False, default=0),
    Column("deposits", BigInteger, nullable=False, default=0),
)


class BalancesBase(Projection):
    """Folds accounts into `pj_balances` and `pj_owners` (subclasses name the topics)."""

    balances = balances_table
    owners = owners_table

    @handles(PjOpened)
    def _opened(self, event: PjOpened, view: View) -> None:
        self.touch(event, view)
        view.upsert(
            self.balances,
            account=event.aggregate_id,
            owner=event.owner,
            events=1,
            total=0,
            last_version=event.version,
        )
        owner = view.get(self.owners, event.owner)
        accounts = owner["accounts"] if owner else 0
        view.upsert(self.owners, owner=event.owner, accounts=accounts + 1)

    @handles(PjDeposited)
    def _deposited(self, event: PjDeposited, view: View) -> None:
        self.touch(event, view)
        row = self._row(event, view)
        view.upsert(
            self.balances,
            account=event.aggregate_id,
            events=row["events"] + 1,
            total=row["total"] + event.amount,
            last_version=event.version,
        )
        owner = view.get(self.owners, row["owner"])
        assert owner is not None
        view.update(self.owners, row["owner"], deposits=owner["deposits"] + event.amount)

    @handles(PjWithdrawn)
    def _withdrawn(self, event: PjWithdrawn, view: View) -> None:
        self.touch(event, view)
        row = self._row(event, view)
        changed = view.update(
            self.balances,
            event.aggregate_id,
            events=row["events"] + 1,
            total=row["total"] - event.amount,
            last_version=event.version,
        )
        assert changed

    @handles(PjClosed)
    def _closed(self, event: PjClosed, view: View) -> None:
        self.touch(event, view)
        row = self._row(event, view)
        view.delete(self.balances, event.aggregate_id)
        owner = view.get(self.owners, row["owner"])
        assert owner is not None
        view.update(self.owners, {"owner": row["owner"]}, accounts=owner["accounts"] - 1)

    def _row(self, event: Event, view: View) -> dict[str, Any]:
        row = view.get(self.balances, event.aggregate_id)
        if row is None:
            raise LookupError(f"no balance row for {event.aggregate_id!r}")
        if row["last_version"] >= event.version:
            raise AssertionError(
                f"{event.aggregate_id} version {event.version} applied twice"
                f" (the row is at {row['last_version']})"
            )
        return row

    def touch(self, event: Event, view: View) -> None:
        """Called first by every handler; subclasses add faults and bookkeeping."""


def balances(context: str, name: str, **attributes: Any) -> type[BalancesBase]:
    """A `Balances` projection called `name` that reads `<context>.account`."""
    namespace = {"name": name, "topics": [f"{context}.account"], **attributes}
    return type("Balances", (BalancesBase,), namespace)


# -- the reactor ------------------------------------------------------------------------

LARGE = 50


class AuditsBase(Reactor):
    """Flags every deposit of at least `LARGE` on the account's `PjAudit`."""

    @handles(PjDeposited)
    def _deposited(self, event: PjDeposited, reaction: Reaction) -> None:
        self.touch(event, reaction)
        if event.amount < LARGE:
            return
        audits = reaction.repository(PjAudit)
        audit = audits.find(event.aggregate_id) or PjAudit(event.aggregate_id)
        audit.flag(str(event.event_id), event.amount)
        audits.save(audit)

    def touch(self, event: Event, reaction: Reaction) -> None:
        """Called first by the handler; subclasses add faults."""


def audits(context: str, name: str, **attributes: Any) -> type[AuditsBase]:
    """An `Audits` reactor called `name` that reads `<context>.account`."""
    namespace = {"name": name, "topics": [f"{context}.account"], **attributes}
    return type("Audits", (AuditsBase,), namespace)


# -- what worker processes run -----------------------------------------------------------
#
# PJTEST_CONTEXT       the source context (topics: <context>.account)
# PJTEST_NAME          the projection's name; PJTEST_REACTOR_NAME the reactor's
# PJTEST_WORKER        who this process is, counted in pj_workers
# PJTEST_PAUSE_AT      after this many events applied in this process, the handler
#                      creates <PJTEST_FLAGS>/reached and waits for <PJTEST_FLAGS>/go
# PJTEST_SLOW          seconds each event takes

ENV_CONTEXT = os.environ.get("PJTEST_CONTEXT", "pjtest")

workers_table = Table(
    "pj_workers",
    metadata,
    Column("worker", String(100), primary_key=True),
    Column("events", Integer, nullable=False, default=0),
)


class _Faults:
    """What `PJTEST_PAUSE_AT`, `PJTEST_FLAGS` and `PJTEST_SLOW` ask for."""

    seen: ClassVar[int] = 0

    @classmethod
    def step(cls) -> None:
        cls.seen += 1
        pause_at = int(os.environ.get("PJTEST_PAUSE_AT", "0"))
        if pause_at and cls.seen == pause_at:
            flags = Path(os.environ["PJTEST_FLAGS"])
            (flags / "reached").touch()
            deadline = time.monotonic() + 30
            while not (flags / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        slow = float(os.environ.get("PJTEST_SLOW", "0"))
        if slow:
            time.sleep(slow)


def install_kill_point() -> None:
    """`PJTEST_KILL_AT=flush|positions|commit` and `PJTEST_KILL_AFTER=N`: the process
    SIGKILLs itself at the Nth time it writes the view's rows, advances its
    positions, or is about to commit, on whichever thread does it
    (`PJTEST_KILL_THREAD`, a name prefix, narrows that down)."""
    point = os.environ.get("PJTEST_KILL_AT")
    if not point:
        return
    after = int(os.environ.get("PJTEST_KILL_AFTER", "1"))
    thread_prefix = os.environ.get("PJTEST_KILL_THREAD", "")
    seen = [0]

    def hit() -> None:
        if not threading.current_thread().name.startswith(thread_prefix):
            return
        seen[0] += 1
        if seen[0] >= after:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        lowered = statement.lower()
        if (point == "flush" and "into pj_balances" in lowered) or (
            point == "positions" and "update projection_positions" in lowered
        ):
            hit()

    def on_commit(conn: Any) -> None:
        if point == "commit" and conn.info.get("pj_wrote_view"):
            hit()

    def note_view_write(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "pj_balances" in statement.lower():
            conn.info["pj_wrote_view"] = True

    def forget(conn: Any) -> None:
        conn.info.pop("pj_wrote_view", None)

    sqlalchemy_event.listen(Engine, "before_cursor_execute", on_statement)
    sqlalchemy_event.listen(Engine, "before_cursor_execute", note_view_write)
    sqlalchemy_event.listen(Engine, "commit", on_commit)
    sqlalchemy_event.listen(Engine, "commit", forget, insert=False)
    sqlalchemy_event.listen(Engine, "rollback", forget)


class EnvBalances(BalancesBase):
    name = os.environ.get("PJTEST_NAME", "pj_env_balances")
    topics = [f"{ENV_CONTEXT}.account"]
    workers = workers_table

    def setup(self) -> None:
        install_kill_point()

    def touch(self, event: Event, view: View) -> None:
        _Faults.step()
        worker = os.environ.get("PJTEST_WORKER", "main")
        row = view.get(self.workers, worker)
        view.upsert(self.workers, worker=worker, events=(row["events"] if row else 0) + 1)


class EnvAudits(AuditsBase):
    name = os.environ.get("PJTEST_REACTOR_NAME", "pj_env_audits")
    topics = [f"{ENV_CONTEXT}.account"]

    def touch(self, event: Event, reaction: Reaction) -> None:
        _Faults.step()
