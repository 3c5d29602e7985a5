"""A minute of faults in the suite: PostgreSQL crash-restarted twice, the broker
killed once, the relay and a worker SIGKILLed once each (see `runner`).

Serial: it stops the shared PostgreSQL server and Kafka broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.runner import run_chaos
from tests.conftest import require_kafka, require_postgres

pytestmark = [pytest.mark.serial, pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]


def test_no_process_dies_and_nothing_is_lost_or_doubled_through_a_minute_of_faults(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    outcome = run_chaos(
        60,
        servers=require_kafka(),
        admin_url=require_postgres(),
        workdir=tmp_path,
        plan=["postgres", "relay", "broker", "postgres", "worker"],
        report=lines.append,
    )
    print("\n".join(lines))
    kinds = sorted(f.kind for f in outcome.faults)
    assert kinds == ["broker", "postgres", "postgres", "relay", "worker"], outcome.summary()
    assert outcome.saves > 200, outcome.summary()
    assert outcome.passed, outcome.summary()
    # After each fault the view moved on again.
    assert all(f.stall is not None for f in outcome.faults), outcome.summary()
