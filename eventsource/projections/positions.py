"""Consumer positions stored beside the views, advanced with a compare-and-set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, delete, select, text, update

from eventsource.bus.base import StartAt, TopicPartition
from eventsource.errors import StalePosition
from eventsource.projections.tables import positions, projections
from eventsource.store.engine import upsert_into


@dataclass(frozen=True, slots=True)
class Position:
    """A partition's stored position and the revision it was read at."""

    offset: int
    last_position: int
    revision: int

    @property
    def start(self) -> StartAt:
        return StartAt(self.offset, self.last_position)


def load(
    conn: Connection, projection: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Position]:
    """Stored positions of `partitions`, creating rows at offset zero for new ones."""
    wanted = list(partitions)
    now = datetime.now(UTC)
    if wanted:
        conn.execute(
            upsert_into(conn, positions).on_conflict_do_nothing(),
            [
                {
                    "projection": projection,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": 0,
                    "last_position": 0,
                    "revision": 0,
                    "updated_at": now,
                }
                for tp in wanted
            ],
        )
    found = all_positions(conn, projection)
    return {tp: found[tp] for tp in wanted}


def all_positions(conn: Connection, projection: str) -> dict[TopicPartition, Position]:
    rows = conn.execute(
        select(
            positions.c.topic,
            positions.c.partition,
            positions.c.offset,
            positions.c.last_position,
            positions.c.revision,
        ).where(positions.c.projection == projection)
    )
    return {TopicPartition(r[0], r[1]): Position(r[2], r[3], r[4]) for r in rows}


def advance(
    conn: Connection,
    projection: str,
    moves: Mapping[TopicPartition, tuple[Position, int, int]],
) -> dict[TopicPartition, Position]:
    """Move each partition from the position read to `(offset, last_position)`.

    Raises `StalePosition` if any row's revision changed since it was read:
    another worker advanced it, and this batch must not commit.
    """
    if len(moves) > 1:
        return _advance_together(conn, projection, moves)
    now = datetime.now(UTC)
    out: dict[TopicPartition, Position] = {}
    for tp, (seen, offset, last_position) in moves.items():
        result = conn.execute(
            update(positions)
            .where(
                and_(
                    positions.c.projection == projection,
                    positions.c.topic == tp.topic,
                    positions.c.partition == tp.partition,
                    positions.c.revision == seen.revision,
                )
            )
            .values(
                offset=offset,
                last_position=last_position,
                revision=seen.revision + 1,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            raise StalePosition(projection, tp.topic, tp.partition, seen.offset)
        out[tp] = Position(offset, last_position, seen.revision + 1)
    return out


def _advance_together(
    conn: Connection,
    projection: str,
    moves: Mapping[TopicPartition, tuple[Position, int, int]],
) -> dict[TopicPartition, Position]:
    """`advance` for several partitions in one statement (one round trip per batch)."""
    params: dict[str, object] = {"projection": projection, "now": datetime.now(UTC)}
    rows: list[str] = []
    for i, (tp, (seen, offset, last_position)) in enumerate(moves.items()):
        rows.append(f"(:t{i}, :p{i}, :r{i}, :o{i}, :l{i})")
        params.update(
            {f"t{i}": tp.topic, f"p{i}": tp.partition, f"r{i}": seen.revision}
            | {f"o{i}": offset, f"l{i}": last_position}
        )
    statement = text(
        f"""
        WITH moves (topic, part, seen, next_offset, last_position) AS (VALUES {", ".join(rows)})
        UPDATE projection_positions
        SET "offset" = moves.next_offset, last_position = moves.last_position,
            revision = moves.seen + 1, updated_at = :now
        FROM moves
        WHERE projection_positions.projection = :projection
          AND projection_positions.topic = moves.topic
          AND projection_positions."partition" = moves.part
          AND projection_positions.revision = moves.seen
        RETURNING projection_positions.topic, projection_positions."partition"
        """
    )
    moved = {TopicPartition(t, p) for t, p in conn.execute(statement, params)}
    for tp, (seen, _, _) in moves.items():
        if tp not in moved:
            raise StalePosition(projection, tp.topic, tp.partition, seen.offset)
    return {
        tp: Position(offset, last_position, seen.revision + 1)
        for tp, (seen, offset, last_position) in moves.items()
    }


def check_current(conn: Connection, projection: str, tp: TopicPartition, seen: Position) -> None:
    """Raise `StalePosition` if `tp`'s row is no longer at the revision `seen`."""
    revision = conn.execute(
        select(positions.c.revision).where(
            and_(
                positions.c.projection == projection,
                positions.c.topic == tp.topic,
                positions.c.partition == tp.partition,
            )
        )
    ).scalar()
    if revision != seen.revision:
        raise StalePosition(projection, tp.topic, tp.partition, seen.offset)


def reset(conn: Connection, projection: str) -> None:
    """Forget every position of `projection` (it will start from offset zero)."""
    conn.execute(delete(positions).where(positions.c.projection == projection))


def register(conn: Connection, name: str, kind: str, version: int) -> int:
    """Record the projection; return the version stored for it (its own if new)."""
    now = datetime.now(UTC)
    conn.execute(
        upsert_into(conn, projections)
        .values(name=name, kind=kind, version=version, status="idle", updated_at=now)
        .on_conflict_do_nothing()
    )
    stored = conn.execute(
        select(projections.c.version).where(projections.c.name == name)
    ).scalar_one()
    return int(stored)


def stored_version(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(projections.c.version).where(projections.c.name == name)).scalar()
    return None if found is None else int(found)


def set_status(
    conn: Connection, name: str, status: str, *, error: str | None = None, clear_error: bool = False
) -> None:
    now = datetime.now(UTC)
    values: dict[str, object] = {"status": status, "updated_at": now}
    if error is not None:
        values["last_error"] = error
        values["last_error_at"] = now
    elif clear_error:
        values["last_error"] = None
        values["last_error_at"] = None
    conn.execute(update(projections).where(projections.c.name == name).values(**values))
