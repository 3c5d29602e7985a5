"""The Kafka demo's Connect step: a sink writes `payments.card_alerts` to a file.

Apache Kafka's own `FileStreamSinkConnector`, configured through a Connect
worker's REST API, reads the topic the `card_alerts` transform writes and
appends each value, the alert's JSON as the transform produced it, to a file:
the way a JDBC, Elasticsearch or S3 sink would hand the same topic on.

Start a worker with `scripts/services.sh connect-up` and pass its address to
`python -m sample_app kafka-demo --connect http://127.0.0.1:8083`.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

TOPIC = "payments.card_alerts"


def sink_config(topic: str, file: Path) -> dict[str, str]:
    """A file sink of `topic`: each value written as the text it is."""
    return {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "file": str(file),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "header.converter": "org.apache.kafka.connect.storage.StringConverter",
        # The transform writes in transactions: hand on committed alerts only.
        "consumer.override.isolation.level": "read_committed",
    }


def _call(url: str, method: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise SystemExit(f"Kafka Connect at {url} answered {exc.code}: {detail}") from None
    except OSError as exc:
        raise SystemExit(
            f"cannot reach Kafka Connect at {url} ({exc}); start it with"
            " `scripts/services.sh connect-up` or leave out --connect"
        ) from None
    try:
        return json.loads(text) if text else None
    except ValueError:
        raise SystemExit(f"{url} did not answer as a Kafka Connect worker does") from None


def check_worker(connect_url: str) -> None:
    """Exit with a one-line reason unless a Connect worker answers at `connect_url`."""
    if not connect_url.startswith(("http://", "https://")):
        raise SystemExit(
            "--connect wants a worker's REST URL such as http://127.0.0.1:8083,"
            f" not {connect_url!r}"
        )
    answer = _call(connect_url.rstrip("/") + "/", "GET")
    if not isinstance(answer, dict) or "version" not in answer:
        raise SystemExit(f"{connect_url} answers, but not as a Kafka Connect worker")


def _lines(file: Path) -> list[str]:
    try:
        return file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def sink_alerts(
    connect_url: str, prefix: str, expected: dict[str, int], *, timeout: float = 90.0
) -> tuple[Path, list[str]]:
    """Run a file sink of the card alerts until it has written as many lines
    as there were declines; the file and its lines. The connector is removed
    afterwards, the file kept."""
    base = connect_url.rstrip("/")
    name = f"{prefix}card-alerts-file"
    file = Path(tempfile.mkdtemp(prefix="card-alerts-")) / "card_alerts.jsonl"
    _call(f"{base}/connectors/{name}/config", "PUT", sink_config(prefix + TOPIC, file))
    try:
        wanted = sum(expected.values())
        deadline = time.monotonic() + timeout
        while len(_lines(file)) < wanted and time.monotonic() < deadline:
            time.sleep(0.3)
        # Anything past the count would be a duplicate: give it a moment to show.
        time.sleep(1.0)
        return file, _lines(file)
    finally:
        _call(f"{base}/connectors/{name}", "DELETE")


def per_card(lines: list[str]) -> dict[str, int]:
    """How many alerts the file holds per card number."""
    return dict(Counter(json.loads(line)["card_number"] for line in lines))
