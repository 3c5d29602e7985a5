"""Deposits into accounts and a view of each account's count and sum: what the
projection and rebuild benchmarks fold, the framework and the baselines alike."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

from eventsource import Event, Projection, View, handles

AGGREGATE = "account"


class Deposited(Event):
    event_type = "bench.Deposited"

    amount: int


metadata = MetaData()
totals = Table(
    "bench_totals",
    metadata,
    Column("account", String(100), primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
)


def totals_projection(context: str) -> type[Projection]:
    """A count and a sum per account (`view.get` + `view.upsert` for every event)."""

    class BenchTotals(Projection):
        name = "bench_totals"
        topics = [f"{context}.{AGGREGATE}"]
        rows = totals

        @handles(Deposited)
        def _deposited(self, event: Deposited, view: View) -> None:
            row = view.get(self.rows, event.aggregate_id)
            if row is None:
                view.upsert(self.rows, account=event.aggregate_id, events=1, total=event.amount)
            else:
                view.upsert(
                    self.rows,
                    account=event.aggregate_id,
                    events=row["events"] + 1,
                    total=row["total"] + event.amount,
                )

    return BenchTotals
