"""The dashboard in a real browser: headless Chromium loads the page served by
`eventsource dashboard` on the sample app, with a live worker and a live
transform, and reads it."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from eventsource import EventStore, Repository
from sample_app.orders.domain import Order
from tests.dashboard.browser import chromium
from tests.dashboard.conftest import Start, dashboard_url
from tests.dashboard.scene import PARKED_ORDER, TRANSFORM, build
from tests.dashboard.test_command import dashboard_args

pytestmark = pytest.mark.browser

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NAMES = [
    "orders.summary",
    "orders.cancel_unpaid",
    "orders.audit",
    "shipping.address_book",
    "shipping.ship_paid_orders",
    "shipping.to_dispatch",
    "payments.card_attempts",
    "payments.card_alerts",
]


def test_the_page_shows_the_sample_app_in_a_real_browser(tmp_path: Path, start: Start) -> None:
    scene = build(tmp_path / "data")
    beat = {"EVENTSOURCE_HEARTBEAT_SECONDS": "1"}
    start(
        "projection",
        "run",
        "sample_app.shipping.views:ShipmentsToDispatch",
        "--context",
        "shipping",
        "--url",
        scene.urls["shipping"],
        "--stores",
        scene.stores_json(),
        env=beat,
    )
    start(
        "transform",
        "run",
        TRANSFORM,
        "--context",
        "payments",
        "--url",
        scene.urls["payments"],
        "--stores",
        scene.stores_json(),
        env=beat,
    )
    url = dashboard_url(start(*dashboard_args(scene, "--interval", "1"), env=beat))
    screenshot = tmp_path / "dashboard.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url)
        expect(page.get_by_test_id("consumer-name")).to_have_text(NAMES, timeout=20_000)

        # Never run: every payment event is lag, in events.
        payments = card(page, "payments.card_attempts")
        expect(payments.get_by_test_id("state")).to_have_text("never run")
        expect(payments.get_by_test_id("lag")).to_have_text(str(scene.count("payments", "payment")))

        # The parked event, with its error and its event.
        audit = card(page, "orders.audit")
        expect(audit.get_by_test_id("parked")).to_have_text("1")
        letter = audit.locator('[data-testid="dead-letter"][data-status="parked"]')
        expect(letter).to_have_count(1)
        expect(letter).to_contain_text("OrderPlaced")
        expect(letter).to_contain_text(f"order:{PARKED_ORDER}")
        expect(letter).to_contain_text("AuditFailed")

        # The reactor's deadlines, and the live worker's state and lag.
        expect(card(page, "orders.cancel_unpaid").get_by_test_id("deadlines-count")).to_have_text(
            "3"
        )
        dispatch = card(page, "shipping.to_dispatch")
        expect(dispatch.get_by_test_id("state")).to_have_text("running", timeout=20_000)
        expect(dispatch.get_by_test_id("lag")).to_have_text("0", timeout=20_000)

        # The transform, run live: its state, output and lag (in events).
        alerts = card(page, "payments.card_alerts")
        expect(alerts.get_by_test_id("output")).to_have_text("→ payments.card_alerts")
        expect(alerts.get_by_test_id("state")).to_have_text("running", timeout=20_000)
        expect(alerts.get_by_test_id("lag")).to_have_text("0")
        expect(alerts.locator("h4", has_text="positions")).to_have_count(1)

        # The live tail, with correlation ids; it refreshes by itself.
        events = page.get_by_test_id("event")
        expect(events.first).to_be_visible()
        assert UUID.match(events.first.get_by_test_id("correlation").inner_text())
        with EventStore(scene.urls["orders"], context="orders") as store:
            Repository(store, Order).save(Order.place("o-fresh", "c-ada", Decimal("1.00")))
        expect(events.filter(has_text="o-fresh v1")).to_have_count(1, timeout=10_000)
        expect(card(page, "orders.summary").get_by_test_id("lag")).to_have_text("1")

        page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not problems, problems


def card(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-consumer="{name}"]')
