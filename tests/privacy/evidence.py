"""Where plaintext could hide: every byte of a database's files, every column
of every table, every message on a topic, every log line."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.bus.model import read_committed


def sqlite_files(url: str) -> bytes:
    """The bytes of a SQLite database and its write-ahead log and index files."""
    path = Path(make_url(url).database or "")
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def every_cell(url: str) -> str:
    """Every column of every row of every table, as text (bytes as they are)."""
    engine = sa.create_engine(make_url(url).set(drivername=_driver(url)))
    parts: list[str] = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    parts.extend(_text(value) for value in row)
    finally:
        engine.dispose()
    return "\n".join(parts)


def postgres_files(url: str) -> bytes:
    """The bytes of every relation file of a PostgreSQL database (tables, TOAST,
    indexes), as the server has them on disk after a checkpoint."""
    engine = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    chunks: list[bytes] = []
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
            paths = conn.execute(
                sa.text(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind IN ('r', 't', 'i') AND n.nspname NOT IN"
                    " ('pg_catalog', 'information_schema') AND c.relfilenode <> 0"
                )
            ).scalars()
            for path in paths:
                data = conn.execute(
                    sa.text("SELECT pg_read_binary_file(CAST(:p AS text))"), {"p": path}
                ).scalar()
                chunks.append(bytes(data or b""))
    finally:
        engine.dispose()
    assert chunks, "no relation files were read"
    return b"".join(chunks)


def topic_bytes(servers: str, topics: list[str]) -> tuple[int, bytes]:
    """How many committed messages `topics` hold, and all their keys, values
    and headers, raw."""
    delivered = read_committed(servers, topics, settle=10)
    out: list[bytes] = []
    for message in delivered:
        out.extend([message.key or b"", message.value or b"", *message.headers.values()])
    return len(delivered), b"\n".join(out)


def _driver(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql+psycopg"


def _text(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)
