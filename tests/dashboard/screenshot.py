"""The README's picture: the dashboard on the sample app with traffic and live workers.

    python -m tests.dashboard.screenshot docs/images/dashboard.png

(`scripts/dashboard_screenshot.sh` runs it.) It builds the scene in a
temporary folder, starts the orders and shipping workers and payments'
card-alerts transform as processes, a trickle of new orders and card
payments, and `eventsource dashboard`; after half a minute of samples it
saves what headless Chromium shows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from tests.dashboard.browser import chromium
from tests.dashboard.processes import Process
from tests.dashboard.scene import AUDIT, SHOWN, TRANSFORM, build

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {
    "orders": [
        "sample_app.orders.views:OrderSummary",
        "sample_app.orders.timeouts:CancelUnpaidOrders",
        AUDIT,
    ],
    "shipping": [
        "sample_app.shipping.views:AddressBook",
        "sample_app.shipping.reactor:ShipPaidOrders",
        "sample_app.shipping.views:ShipmentsToDispatch",
    ],
}
WATCH_SECONDS = 30


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-") as folder:
        where = Path(folder)
        # Relative paths: the page shows sqlite:///demo-data/orders.db.
        scene = build(where / "demo-data")
        urls = {ctx: f"sqlite:///demo-data/{ctx}.db" for ctx in scene.urls}
        stores = scene.stores_json().replace(f"{where}/", "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
        env.update(PYTHONPATH=str(ROOT), EVENTSOURCE_HEARTBEAT_SECONDS="1")
        processes: list[Process] = []

        def start(*args: str, module: str = "eventsource") -> Process:
            log = where / f"process-{len(processes)}.log"
            process = Process(list(args), env, where, log, module=module)
            processes.append(process)
            return process

        try:
            for context, names in WORKERS.items():
                common = ["--context", context, "--url", urls[context], "--stores", stores]
                start("projection", "run", *names, *common)
            payments = ["--context", "payments", "--url", urls["payments"], "--stores", stores]
            start("transform", "run", TRANSFORM, *payments)
            start("trickle", "demo-data", module="tests.dashboard.scene")
            dashboard = start(
                "dashboard", "--port", "0", "--interval", "1", "--events", "12",
                "--context", "shipping", "--stores", stores, *SHOWN,
            )  # fmt: skip
            line = dashboard.first_line()
            url = line.split(" on ", 1)[1].split()[0]
            print(f"{line}; watching for {WATCH_SECONDS} s", file=sys.stderr)
            time.sleep(WATCH_SECONDS)
            shoot(url, target)
        finally:
            for process in reversed(processes):
                process.stop()
    print(f"wrote {target}", file=sys.stderr)


def shoot(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page.goto(url)
        page.get_by_test_id("consumer-name").first.wait_for()
        page.wait_for_timeout(1500)  # one more sample: throughput over two of them at least
        page.screenshot(path=str(target), full_page=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images" / "dashboard.png")
