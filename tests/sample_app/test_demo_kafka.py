"""The sample app's story on Kafka and PostgreSQL, as separate processes per context."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.conftest import require_kafka, require_postgres
from tests.connect.conftest import Connect

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
def test_kafka_demo_read_models_match_the_story(connect: Connect) -> None:
    admin = AdminClient({"bootstrap.servers": require_kafka()})
    before = demo_topics(admin)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env.update(
        {
            "EVENTSOURCE_DATABASE_URL": require_postgres(),
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": require_kafka(),
            "SAMPLE_UNPAID_TIMEOUT": "2",
            "PYTHONPATH": str(ROOT),
        }
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sample_app",
            "kafka-demo",
            "--timeout",
            "150",
            "--connect",
            connect.url,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for line in (
        "[ok] every paid order has exactly one shipment, no unpaid order has one",
        "[ok] shipping's address book equals the customers' latest addresses",
        "[ok] unpaid orders were cancelled by their deadline",
        "[ok] flagged cards are exactly those with > 3 attempts in one window",
        "[ok] each declined attempt became one alert on payments.card_alerts, keyed by its card",
        "rebuilt views identical to the live ones: yes",
        "Kafka Connect: a FileStreamSinkConnector reads shop-",
        "[ok] the sink wrote each card alert once, to ",
    ):
        assert line in out, out
    # Its topics (a prefix of its own) went with its databases.
    assert "topics prefixed 'shop-" in out
    assert demo_topics(admin) <= before


def demo_topics(admin: AdminClient) -> set[str]:
    return {t for t in admin.list_topics(timeout=30).topics if t.startswith("shop-")}
