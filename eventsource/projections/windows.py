"""Tumbling windows as a view table: counts (and sums) per key per time window.

::

    attempts = TumblingWindow(
        "card_attempt_windows", metadata,
        key=Column("card_number", String(32)), size=timedelta(minutes=5),
    )

    class CardAttempts(Projection):
        topics = ["payments.authorization"]
        windows = attempts.table

        @handles(AuthorizationAttempted)
        def _attempted(self, event: AuthorizationAttempted, view: View) -> None:
            attempts.add(view, event.card_number, event.occurred_at)

    # cards with more than 3 attempts in one 5-minute window:
    connection.execute(attempts.keys_with_more_than(3))

Windows are aligned to the Unix epoch and taken from the event's own time
(`occurred_at` or any timestamp the caller passes), never from the worker's
clock, so a rebuild gives the identical table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    TypeDecorator,
    select,
)
from sqlalchemy.types import TypeEngine

from eventsource.errors import ConfigurationError
from eventsource.projections.view import View

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """`NUMERIC(38, 10)`, except on SQLite, whose NUMERIC is a float: text there.

    A float keeps about 16 digits, so a sum such as 1234567.89 would come
    back as 1234567.8899999999 at ten decimals. On SQLite the column holds
    the decimal's text (exact; SQL comparisons on it are textual).
    """

    impl = Numeric(38, 10)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(60))
        return dialect.type_descriptor(Numeric(38, 10))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return str(Decimal(value).quantize(_SCALE))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)) if dialect.name == "sqlite" else value


_SCALE = Decimal(1).scaleb(-10)


class TumblingWindow:
    """A table of `(key, window_start) -> window_end, count, sums...`."""

    def __init__(
        self,
        name: str,
        metadata: MetaData,
        *,
        key: Column[Any],
        size: timedelta,
        sums: list[str] | None = None,
    ) -> None:
        if size <= timedelta(0):
            raise ConfigurationError(f"window size must be positive, got {size}")
        self.size = size
        self.key_name = key.name
        self.sums = list(sums or [])
        key.primary_key = True
        self.table = Table(
            name,
            metadata,
            key,
            Column("window_start", DateTime(timezone=True), primary_key=True),
            Column("window_end", DateTime(timezone=True), nullable=False),
            Column("count", BigInteger, nullable=False),
            *(Column(s, ExactDecimal(), nullable=False) for s in self.sums),
        )

    def window_of(self, at: datetime) -> tuple[datetime, datetime]:
        """The `[start, end)` window containing `at` (which must be time-zone aware)."""
        if at.tzinfo is None:
            raise ConfigurationError("window times must be time-zone aware")
        steps = (at - _EPOCH) // self.size
        start = _EPOCH + steps * self.size
        return start, start + self.size

    def add(self, view: View, key: Any, at: datetime, **amounts: Decimal | int) -> None:
        """Count one occurrence of `key` at `at` (and add `amounts` to the sums)."""
        unknown = set(amounts) - set(self.sums)
        if unknown:
            raise ConfigurationError(f"window {self.table.name!r} has no sum(s) {sorted(unknown)}")
        start, end = self.window_of(at)
        row = view.get(self.table, (key, start))
        values: dict[str, Any] = {
            self.key_name: key,
            "window_start": start,
            "window_end": end,
            "count": (row["count"] if row else 0) + 1,
        }
        for name in self.sums:
            values[name] = Decimal(row[name] if row else 0) + Decimal(amounts.get(name, 0))
        view.upsert(self.table, values)

    def keys_with_more_than(self, threshold: int) -> Select[Any]:
        """Keys with more than `threshold` occurrences in any one window."""
        key = self.table.c[self.key_name]
        return select(key).where(self.table.c["count"] > threshold).distinct().order_by(key)

    def windows_over(self, threshold: int) -> Select[Any]:
        """The windows themselves (key, start, end, count) above `threshold`."""
        t = self.table
        return (
            select(t.c[self.key_name], t.c.window_start, t.c.window_end, t.c["count"])
            .where(t.c["count"] > threshold)
            .order_by(t.c[self.key_name], t.c.window_start)
        )
