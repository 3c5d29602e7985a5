"""`eventsource dashboard` as a process: what it serves, to whom, and what it refuses."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli.conftest import error_line
from tests.dashboard.conftest import Start, dashboard_url, wait_until
from tests.dashboard.scene import SHOWN, Scene

TOKEN = "t0ken-for-the-dashboard-test"


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def snapshot(url: str, **headers: str) -> dict[str, Any]:
    """The first snapshot with a sample in it."""
    found: dict[str, Any] = {}

    def sampled() -> bool:
        status, _, body = get(url + "api/snapshot", **headers)
        assert status == 200, body
        found.update(orjson.loads(body))
        return found.get("sampled_at") is not None

    wait_until(sampled, what="a first sample")
    return found


def dashboard_args(scene: Scene, *extra: str) -> list[str]:
    return [
        "dashboard",
        "--port",
        "0",
        "--context",
        "shipping",
        "--stores",
        scene.stores_json(),
        *SHOWN,
        *extra,
    ]


def test_serves_the_page_and_the_snapshot_on_loopback(scene: Scene, start: Start) -> None:
    url = dashboard_url(start(*dashboard_args(scene, "--interval", "0.5")))
    assert url.startswith("http://127.0.0.1:")
    status, headers, body = get(url)
    assert status == 200
    assert b"eventsource" in body
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    status, headers, _ = get(url + "static/dashboard.js")
    assert (status, headers["content-type"].split(";")[0]) == (200, "text/javascript")
    found = snapshot(url)
    _, headers, _ = get(url + "api/snapshot")
    assert 0 <= float(headers["x-snapshot-age"]) < 5  # sampled every half second
    assert headers["cache-control"] == "no-store"
    assert [c["name"] for c in found["consumers"]] == [
        "orders.summary",
        "orders.cancel_unpaid",
        "orders.audit",
        "shipping.address_book",
        "shipping.ship_paid_orders",
        "shipping.to_dispatch",
        "payments.card_attempts",
        "payments.card_alerts",
    ]
    assert found["consumers"][-1]["kind"] == "transform"
    assert {c["name"] for c in found["contexts"]} == {"customers", "orders", "shipping", "payments"}


def test_nothing_but_reading_is_served(scene: Scene, start: Start) -> None:
    url = dashboard_url(start(*dashboard_args(scene)))
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(url + "api/snapshot", method=method, data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 405, method
    assert get(url + "api/replay")[0] == 404


def test_on_loopback_a_foreign_host_name_is_refused(scene: Scene, start: Start) -> None:
    # A page whose own domain name was rebound to 127.0.0.1 sends its own Host.
    url = dashboard_url(start(*dashboard_args(scene)))
    assert get(url + "api/snapshot", Host="attacker.example")[0] == 400
    assert get(url.replace("127.0.0.1", "localhost") + "api/snapshot")[0] == 200


def test_with_a_token_the_snapshot_needs_it(scene: Scene, start: Start) -> None:
    process = start(*dashboard_args(scene), env={"EVENTSOURCE_DASHBOARD_TOKEN": TOKEN})
    url = dashboard_url(process)
    assert get(url)[0] == 200  # the page itself holds no data
    status, headers, _ = get(url + "api/snapshot")
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
    assert get(url + "api/snapshot", Authorization=f"Bearer {TOKEN}x")[0] == 401
    assert get(url + "api/snapshot", Authorization=f"Basic {TOKEN}")[0] == 401
    assert snapshot(url, Authorization=f"Bearer {TOKEN}")["consumers"]
    assert TOKEN not in process.stderr


def test_beyond_loopback_a_token_is_required(scene: Scene, run_cli) -> None:
    result = run_cli(*dashboard_args(scene, "--host", "0.0.0.0"))
    assert "--host 0.0.0.0 serves the dashboard beyond this machine: give it a token" in error_line(
        result
    )
    short = run_cli(*dashboard_args(scene, "--host", "0.0.0.0", "--token", "short"))
    assert "at least 16" in error_line(short)


def test_a_missing_database_is_refused_not_created(tmp_path: Path, run_cli) -> None:
    missing = tmp_path / "orders.db"
    result = run_cli(
        "dashboard", "--url", f"sqlite:///{missing}", "--context", "orders", "--port", "0"
    )
    assert f"no database at {missing}" in error_line(result)
    assert not missing.exists()


def test_a_consumer_of_an_unknown_context_is_refused(scene: Scene, run_cli) -> None:
    result = run_cli(*dashboard_args(scene, "inventory=sample_app.orders.views:OrderSummary"))
    assert "belongs to context 'inventory', whose database is not configured" in error_line(result)
