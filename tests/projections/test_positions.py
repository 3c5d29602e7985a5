"""Positions move only from the revision a worker read, one partition or many at once."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from eventsource.bus.base import TopicPartition
from eventsource.errors import StalePosition
from eventsource.projections import positions
from eventsource.store.engine import write_connection
from eventsource.store.eventstore import EventStore

PARTITIONS = [TopicPartition("ctx.thing", p) for p in range(4)]


def loaded(engine: Engine) -> dict[TopicPartition, positions.Position]:
    with write_connection(engine) as conn, conn.begin():
        return positions.load(conn, "pos_test", PARTITIONS)


@pytest.mark.parametrize("count", [1, 4])
def test_advance_moves_every_partition_and_bumps_revisions(store: EventStore, count: int) -> None:
    start = loaded(store.engine)
    moves = {tp: (start[tp], 10 + i, 100 + i) for i, tp in enumerate(PARTITIONS[:count])}
    with write_connection(store.engine) as conn, conn.begin():
        advanced = positions.advance(conn, "pos_test", moves)
    after = loaded(store.engine)
    for i, tp in enumerate(PARTITIONS[:count]):
        assert after[tp] == advanced[tp] == positions.Position(10 + i, 100 + i, 1)
    for tp in PARTITIONS[count:]:
        assert after[tp] == positions.Position(0, 0, 0)


def test_a_stale_partition_rejects_the_whole_batch(store: EventStore) -> None:
    start = loaded(store.engine)
    # Another worker moves partition 2 first.
    with write_connection(store.engine) as conn, conn.begin():
        positions.advance(conn, "pos_test", {PARTITIONS[2]: (start[PARTITIONS[2]], 5, 50)})
    moves = {tp: (start[tp], 7, 70) for tp in PARTITIONS}
    with (
        pytest.raises(StalePosition) as raised,
        write_connection(store.engine) as conn,
        conn.begin(),
    ):
        positions.advance(conn, "pos_test", moves)
    assert (raised.value.topic, raised.value.partition) == ("ctx.thing", 2)
    after = loaded(store.engine)
    assert after[PARTITIONS[2]] == positions.Position(5, 50, 1)
    for tp in (PARTITIONS[0], PARTITIONS[1], PARTITIONS[3]):
        assert after[tp] == positions.Position(0, 0, 0)  # nothing of the batch committed
