"""`eventsource projection rebuild` killed with SIGKILL midway, again and again.

The rebuild runs in its own process (the command users run). Each time it is
killed the live view (its rows, positions and state) must be exactly what it
was before the rebuild started; run again, it resumes where its own committed
positions say and applies every remaining event exactly once; with
`--restart` it starts over from offset zero. In the end the swapped-in view
equals an independent fold of every event.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from eventsource import Repository, Worker
from eventsource.bus.partitioner import partition_for
from eventsource.projections.rebuild import SUFFIX
from eventsource.projections.tables import projections
from tests.conftest import unique
from tests.projections.apps_rebuild import RbWallet, fold_wallets, wallet_totals
from tests.projections.rig import RIGS, Rig, eventually, open_rig

pytestmark = pytest.mark.slow

APP = "tests.projections.apps_rebuild:EnvWalletTotals"
DONE = re.compile(r"rebuilt from offset zero \(([\d,]+) events\)")


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, database_url_factory: Callable[..., str]) -> Iterator[Rig]:
    with open_rig(request.param, database_url_factory) as opened:
        yield opened


def populate(rig: Rig, wallets: int, deposits: int) -> int:
    repository = Repository(rig.store, RbWallet)
    opened = [RbWallet.open(f"w{i}", f"owner-{i % 9}") for i in range(wallets)]
    for n in range(deposits):
        opened[(n * 7) % wallets].deposit(n % 97 + 1)
    return repository.save(*opened)


def live_state(rig: Rig, name: str) -> dict[str, Any]:
    """Everything a reader of the live view could see."""
    with rig.views.connect() as conn:
        state = conn.execute(
            select(projections.c.version, projections.c.status).where(projections.c.name == name)
        ).all()
    return {
        "wallets": rig.rows("rb_wallets", "wallet"),
        "owners": rig.rows("rb_owners", "owner"),
        "positions": rig.stored_positions(name),
        "state": [tuple(r) for r in state],
    }


def rebuild_progress(rig: Rig, name: str) -> int:
    """Messages the rebuild has committed (the sum of its next offsets)."""
    return sum(offset for offset, _ in rig.stored_positions(f"{name}#rebuild").values())


def applied_by_rebuild(rig: Rig, name: str) -> int:
    """Events at or below the rebuild's committed positions, partition by partition."""
    done = {p: last for (_, p), (_, last) in rig.stored_positions(f"{name}#rebuild").items()}
    count = 0
    for record in rig.records():
        p = partition_for(record.aggregate_id, rig.partitions) if rig.partitions > 1 else 0
        count += record.position <= done.get(p, 0)
    return count


def kill_midway(rig: Rig, name: str, env: dict[str, str], log: Path, *extra: str) -> int:
    """Start a rebuild, SIGKILL it once it has committed more; return its progress."""
    before = rebuild_progress(rig, name)
    args = ["projection", "rebuild", APP, "--batch-size", "50", *extra]
    process = rig.spawn(*args, env=env, log=log)
    try:
        eventually(
            lambda: rebuild_progress(rig, name) >= before + 300 or process.poll() is not None,
            timeout=60,
            what="the rebuild to make progress",
        )
        assert process.poll() is None, f"the rebuild ended early:\n{log.read_text()[-3000:]}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    return rebuild_progress(rig, name)


def shadow_tables(rig: Rig) -> set[str]:
    with rig.views.connect() as conn:
        return {t for t in inspect(conn).get_table_names() if t.endswith(SUFFIX)}


def test_killed_rebuilds_never_touch_the_live_view(rig: Rig, tmp_path: Path) -> None:
    name = unique("rb_crash")
    Totals = wallet_totals(rig.context, name)
    populate(rig, wallets=40, deposits=1600)
    rig.publish()
    Worker(Totals(), rig.log(), engine=rig.views).run(until_caught_up=True)
    total = len(rig.records())
    live = live_state(rig, name)
    assert sum(w["events"] for w in live["wallets"].values()) == total

    # More events after the live view was built: the rebuilt view must have them.
    populate_more = Repository(rig.store, RbWallet)
    extra = [RbWallet.open(f"x{i}", "owner-late") for i in range(10)]
    populate_more.save(*extra)
    rig.publish()
    total = len(rig.records())

    env = rig.env(RBTEST_NAME=name, RBTEST_SLOW="0.0015")
    log = tmp_path / "rebuild.log"
    # On Kafka every restart after a kill also waits for the dead member to
    # leave the consumer group (its session timeout): one kill there.
    kills = 3 if not rig.is_kafka else 1
    progress = 0
    for _ in range(kills):
        reached = kill_midway(rig, name, env, log)
        assert reached > progress, "a restarted rebuild did not resume past its last commit"
        progress = reached
        assert live_state(rig, name) == live, "a killed rebuild changed the live view"
        assert shadow_tables(rig) == {"rb_wallets__rebuild", "rb_owners__rebuild"}

    # Resumed, it applies exactly the events it had not committed yet.
    remaining = total - applied_by_rebuild(rig, name)
    assert 0 < remaining < total
    finished = rig.cli("projection", "rebuild", APP, "--batch-size", "200", env=env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    match = DONE.search(finished.stdout)
    assert match, finished.stdout
    assert int(match.group(1).replace(",", "")) == remaining
    wallets, owners = fold_wallets(rig.records())
    assert rig.rows("rb_wallets", "wallet") == wallets
    assert rig.rows("rb_owners", "owner") == owners
    assert shadow_tables(rig) == set()

    # --restart: killed midway, then started over from offset zero.
    kill_midway(rig, name, env, log)
    assert rig.rows("rb_wallets", "wallet") == wallets, "a killed rebuild changed the live view"
    restarted = rig.cli("projection", "rebuild", APP, "--batch-size", "200", "--restart", env=env)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    match = DONE.search(restarted.stdout)
    assert match, restarted.stdout
    assert int(match.group(1).replace(",", "")) == total
    assert rig.rows("rb_wallets", "wallet") == wallets
    assert rig.rows("rb_owners", "owner") == owners
    assert shadow_tables(rig) == set()


def test_interrupted_rebuild_exits_cleanly_and_resumes(rig: Rig, tmp_path: Path) -> None:
    """SIGTERM: the rebuild finishes its batch, says how to resume, and exits 1."""
    name = unique("rb_term")
    populate(rig, wallets=10, deposits=800)
    rig.publish()
    env = rig.env(RBTEST_NAME=name, RBTEST_SLOW="0.002")
    log = tmp_path / "term.log"
    process = rig.spawn("projection", "rebuild", APP, "--batch-size", "50", env=env, log=log)
    try:
        eventually(lambda: rebuild_progress(rig, name) >= 100, timeout=60, what="progress")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 1, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "run again to resume" in log.read_text()
    with rig.views.connect() as conn:
        assert not inspect(conn).has_table("rb_wallets"), "an interrupted rebuild swapped"
    resumed = rig.cli("projection", "rebuild", APP, env=rig.env(RBTEST_NAME=name))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert rig.rows("rb_wallets", "wallet") == fold_wallets(rig.records())[0]
