"""docs/schema-evolution.md's example runs, and its upcaster reads a version 1 event."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from eventsource import StoredEvent
from eventsource.events.codec import EventCodec
from tests.conftest import ROOT


def test_the_upcaster_example_reads_a_version_1_event() -> None:
    page = (ROOT / "docs" / "schema-evolution.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    namespace: dict[str, Any] = {"__name__": "docs_schema_evolution"}
    exec(compile(example, "docs/schema-evolution.md", "exec"), namespace)
    record = StoredEvent(
        position=1,
        stream_id="account:1",
        aggregate_id="1",
        aggregate_type="account",
        version=1,
        event_type="AccountOpened",
        schema_version=1,
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        payload='{"holder": "Ada"}',
        metadata="{}",
    )
    event = EventCodec().decode(record)
    assert type(event) is namespace["AccountOpened"]
    assert event.holder_name == "Ada"  # type: ignore[attr-defined]
