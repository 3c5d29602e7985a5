"""The three contenders of every benchmark, each on its own database.

* framework: `EventStore` + `Repository`, as an application uses them;
* baseline: hand-written code doing the same work with the same guarantees
  (orjson-encoded pydantic events, SQLAlchemy Core, one transaction per batch,
  the same commit-order lock, the same table);
* floor: the raw DBAPI driver writing rows that are already encoded.

Each writes into its own database (or SQLite file) whose schema was created
by `EventStore.create_schema()`, so constraints, indexes and triggers are
identical and every table grows by the same rows. Reads all go to the
framework's database, so that they fetch exactly the same rows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy import Engine, event, insert, select
from sqlalchemy.engine import make_url

from eventsource import Event, EventStore
from eventsource.events import METADATA_FIELDS
from eventsource.events.codec import DEFAULT_MAX_EVENT_BYTES
from eventsource.events.records import StoredEvent
from eventsource.store import schema

COLUMNS = (
    "stream_id",
    "aggregate_id",
    "aggregate_type",
    "version",
    "event_type",
    "schema_version",
    "event_id",
    "occurred_at",
    "payload",
    "metadata",
)
_READ_COLUMNS = "global_position, " + ", ".join(COLUMNS)
_EXCLUDE = set(METADATA_FIELDS)
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


# -- the hand-written baseline -----------------------------------------------------


class Baseline:
    """What a careful engineer would write by hand with pydantic, orjson and Core."""

    def __init__(self, write_engine: Engine, read_engine: Engine) -> None:
        self.write_engine = write_engine
        self.read_engine = read_engine
        self.classes: dict[str, type[Event]] = {}
        self.insert = insert(schema.events)
        self.max_bytes = DEFAULT_MAX_EVENT_BYTES

    def close(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()

    def register(self, *classes: type[Event]) -> None:
        for cls in classes:
            self.classes[cls.event_type] = cls

    def row(self, event: Event) -> dict[str, Any]:
        payload = orjson.dumps(event.model_dump(mode="json", exclude=_EXCLUDE)).decode()
        if len(payload) > self.max_bytes:
            raise ValueError(f"{event.event_type} is {len(payload)} bytes, above the limit")
        meta = {}
        if event.correlation_id is not None:
            meta["correlation_id"] = str(event.correlation_id)
        if event.causation_id is not None:
            meta["causation_id"] = str(event.causation_id)
        return {
            "stream_id": f"{event.aggregate_type}:{event.aggregate_id}",
            "aggregate_id": event.aggregate_id,
            "aggregate_type": event.aggregate_type,
            "version": event.version,
            "event_type": event.event_type,
            "schema_version": type(event).schema_version,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
            "payload": payload,
            "metadata": orjson.dumps(meta).decode(),
        }

    def append(self, events: Sequence[Event]) -> None:
        """Encode and insert in one transaction; the table's unique key checks versions."""
        rows = [self.row(e) for e in events]
        with self.write_engine.begin() as conn:
            conn.execute(self.insert, rows)

    def append_one(self, event: Event) -> None:
        row = self.row(event)
        with self.write_engine.begin() as conn:
            conn.execute(self.insert, row)

    def read_page(self, after: int, limit: int) -> tuple[int, list[Event]]:
        statement = (
            select(*schema.EVENT_COLUMNS)
            .where(schema.events.c.global_position > after)
            .order_by(schema.events.c.global_position)
            .limit(limit)
        )
        with self.read_engine.begin() as conn:
            rows = conn.execute(statement).all()
        if not rows:
            return after, []
        return rows[-1][0], [self.event(row) for row in rows]

    def event(self, row: Sequence[Any]) -> Event:
        """The pydantic event of one row: validated payload plus the metadata columns."""
        cls = self.classes[row[5]]
        if row[6] != cls.schema_version or len(row[9]) > self.max_bytes:
            raise ValueError(f"cannot decode {row[5]} at {row[1]}@{row[4]}")
        event = cls.model_validate_json(row[9])
        meta = orjson.loads(row[10])
        correlation, causation = meta.get("correlation_id"), meta.get("causation_id")
        occurred_at = row[8]
        occurred_at = (
            occurred_at.replace(tzinfo=UTC)
            if occurred_at.tzinfo is None
            else occurred_at.astimezone(UTC)
        )
        values = {
            "event_id": row[7],
            "aggregate_id": row[2],
            "aggregate_type": row[3],
            "version": row[4],
            "position": row[0],
            "occurred_at": occurred_at,
            "correlation_id": uuid.UUID(correlation) if correlation else None,
            "causation_id": uuid.UUID(causation) if causation else None,
        }
        event.__dict__.update(values)
        event.__pydantic_fields_set__.update(values)
        return event


# -- the raw driver floor --------------------------------------------------------


class SqliteFloor:
    """sqlite3 itself: `BEGIN IMMEDIATE`, `executemany`, `COMMIT`."""

    method = "sqlite3 executemany"

    def __init__(self, write_path: str, read_path: str) -> None:
        self.write = _sqlite3_connect(write_path)
        self.read = _sqlite3_connect(read_path)
        self.sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})"

    def close(self) -> None:
        self.write.close()
        self.read.close()

    @staticmethod
    def row(record: StoredEvent) -> tuple[Any, ...]:
        # The representation SQLAlchemy's Uuid and DateTime types store in SQLite.
        stamp = record.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return (*_columns(record)[:6], record.event_id.hex, stamp, record.payload, record.metadata)

    def append(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.write.execute("BEGIN IMMEDIATE")
        self.write.executemany(self.sql, rows)
        self.write.execute("COMMIT")

    def append_one(self, row: tuple[Any, ...]) -> None:
        self.write.execute("BEGIN IMMEDIATE")
        self.write.execute(self.sql, row)
        self.write.execute("COMMIT")

    def read_page(self, after: int, limit: int) -> tuple[int, list[Any]]:
        rows = self.read.execute(
            f"SELECT {_READ_COLUMNS} FROM events WHERE global_position > ?"
            " ORDER BY global_position LIMIT ?",
            (after, limit),
        ).fetchall()
        if not rows:
            return after, []
        return rows[-1][0], [orjson.loads(row[9]) for row in rows]


class PostgresFloor:
    """psycopg itself: `COPY ... FROM STDIN` (batches) or one `INSERT` (single rows)."""

    method = "psycopg COPY"

    def __init__(self, write_url: str, read_url: str) -> None:
        self.write = psycopg.connect(write_url)
        self.read = psycopg.connect(read_url)
        self.copy_sql = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
        self.insert_sql = (
            f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * 10)})"
        )

    def close(self) -> None:
        self.write.close()
        self.read.close()

    @staticmethod
    def row(record: StoredEvent) -> tuple[Any, ...]:
        return _columns(record)

    def append(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with self.write.cursor() as cur, cur.copy(self.copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        self.write.commit()

    def append_one(self, row: tuple[Any, ...]) -> None:
        self.write.execute(self.insert_sql, row)
        self.write.commit()

    def read_page(self, after: int, limit: int) -> tuple[int, list[Any]]:
        with self.read.cursor() as cur:
            rows = cur.execute(
                f"SELECT {_READ_COLUMNS} FROM events WHERE global_position > %s"
                " ORDER BY global_position LIMIT %s",
                (after, limit),
            ).fetchall()
        self.read.commit()
        if not rows:
            return after, []
        return rows[-1][0], [orjson.loads(row[9]) for row in rows]


Floor = SqliteFloor | PostgresFloor


def _columns(record: StoredEvent) -> tuple[Any, ...]:
    return (
        record.stream_id,
        record.aggregate_id,
        record.aggregate_type,
        record.version,
        record.event_type,
        record.schema_version,
        record.event_id,
        record.occurred_at,
        record.payload,
        record.metadata,
    )


def _sqlite3_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    for pragma in _SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


# -- one backend: three databases ---------------------------------------------------


@dataclass
class Backend:
    """The framework's store, the baseline and the floor, on one kind of database."""

    name: str
    server_version: str
    store: EventStore
    baseline: Baseline
    floor: Floor
    location: str
    raw: dict[str, str]
    cleanup: list[Any] = field(default_factory=list)

    def close(self) -> None:
        self.store.close()
        self.baseline.close()
        self.floor.close()
        for step in reversed(self.cleanup):
            step()

    def raw_rows(self, which: str, limit: int) -> list[tuple[Any, ...]]:
        """The first `limit` rows of one contender's table, read with the raw driver."""
        sql = f"SELECT {_READ_COLUMNS} FROM events ORDER BY global_position LIMIT {int(limit)}"
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.raw[which])) as conn:
                return [tuple(r) for r in conn.execute(sql)]
        with psycopg.connect(self.raw[which]) as conn:
            return [tuple(r) for r in conn.execute(sql.encode())]


def open_sqlite(directory: str | None) -> Backend:
    """Three SQLite files (WAL, synchronous=FULL) in a fresh temporary directory."""
    root = tempfile.mkdtemp(prefix="eventsource-bench-", dir=directory)
    paths = {name: os.path.join(root, f"{name}.db") for name in ("framework", "baseline", "floor")}
    for name in ("baseline", "floor"):
        with EventStore(f"sqlite:///{paths[name]}", context="bench") as twin:
            twin.create_schema()
    store = EventStore(f"sqlite:///{paths['framework']}", context="bench")
    store.create_schema()
    baseline = Baseline(
        _baseline_sqlite(paths["baseline"], write=True),
        _baseline_sqlite(paths["framework"], write=False),
    )
    return Backend(
        name="sqlite",
        server_version=sqlite3.sqlite_version,
        store=store,
        baseline=baseline,
        floor=SqliteFloor(paths["floor"], paths["framework"]),
        location=root,
        raw=paths,
        cleanup=[lambda: shutil.rmtree(root, ignore_errors=True)],
    )


def _baseline_sqlite(path: str, *, write: bool) -> Engine:
    # pysqlite's own transaction handling: `BEGIN IMMEDIATE` before the first
    # INSERT takes the write lock up front, like the framework's writers.
    engine = sa.create_engine(
        f"sqlite:///{path}",
        connect_args={"isolation_level": "IMMEDIATE" if write else "DEFERRED", "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        for pragma in _SQLITE_PRAGMAS:
            dbapi_connection.execute(pragma)

    return engine


def open_postgres(admin_url: str) -> Backend:
    """Three fresh databases with unique names on the server; dropped on close."""
    admin = sa.create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    tag = f"es_bench_{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
    urls: dict[str, sa.URL] = {}
    backend: Backend | None = None
    try:
        for name in ("framework", "baseline", "floor"):
            database = f"{tag}_{name}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
            urls[name] = admin.url.set(database=database)
            with EventStore(urls[name], context="bench") as store:
                store.create_schema()
        with admin.connect() as conn:
            version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        store = EventStore(urls["framework"], context="bench")
        baseline = Baseline(sa.create_engine(urls["baseline"]), sa.create_engine(urls["framework"]))
        floor = PostgresFloor(_libpq(urls["floor"]), _libpq(urls["framework"]))
        backend = Backend(
            name="postgres",
            server_version=version.split(maxsplit=1)[0],
            store=store,
            baseline=baseline,
            floor=floor,
            location=f"{admin.url.host}:{admin.url.port} databases {tag}_*",
            raw={name: _libpq(url) for name, url in urls.items()},
        )
        return backend
    finally:
        drop = [_dropper(admin, str(url.database)) for url in urls.values()]
        if backend is None:  # set-up failed: drop what was created
            for step in drop:
                step()
            admin.dispose()
        else:
            backend.cleanup.extend([*drop, admin.dispose])


def _dropper(admin: Engine, database: str) -> Any:
    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    return drop


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
