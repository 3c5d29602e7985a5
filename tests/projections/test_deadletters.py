"""Poison events: dead-lettered with their error, then stop or park.

"stop" (the default): the worker stops on the event, its position stays
before it, and the dead letter is resolved once a fixed handler gets past it.
"park": the event is parked and the worker goes on; later events of the same
aggregate wait behind it as "blocked" while other aggregates flow; once the
handler is fixed, a replay applies them in order and the aggregate flows
again. Also through the command line: `status`, `deadletters`, `replay`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from eventsource import Repository, StoredEvent, Worker
from eventsource.bus.partitioner import partition_for
from eventsource.errors import ConfigurationError, PoisonEvent
from eventsource.projections import deadletters
from eventsource.projections.tables import projections
from eventsource.store.engine import read_transaction
from tests.conftest import unique
from tests.projections.apps_rebuild import RbWallet, WalletTotalsBase, fold_wallets, wallet_totals
from tests.projections.rig import RIGS, Rig, open_rig

POISON = 13
APP = "tests.projections.apps_rebuild:EnvWalletTotals"


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, database_url_factory: Callable[..., str]) -> Iterator[Rig]:
    with open_rig(request.param, database_url_factory) as opened:
        yield opened


def save_wallets(rig: Rig, deposits: dict[str, list[int]], *, wallets: dict[str, RbWallet]) -> int:
    """Open the wallets not opened yet and make `deposits`; return the last position."""
    repository = Repository(rig.store, RbWallet)
    for wallet_id, amounts in deposits.items():
        wallet = wallets.get(wallet_id)
        if wallet is None:
            wallet = wallets[wallet_id] = RbWallet.open(wallet_id, f"owner-{wallet_id[-1]}")
        for amount in amounts:
            wallet.deposit(amount)
    position = repository.save(*[wallets[w] for w in deposits])
    rig.publish()
    return position


def worker(rig: Rig, cls: type[WalletTotalsBase]) -> Worker:
    return Worker(cls(), rig.log(), engine=rig.views, batch_size=50, retry_backoff=0.01)


def letters(rig: Rig, name: str) -> list[deadletters.DeadLetter]:
    with read_transaction(rig.views) as conn:
        return list(reversed(deadletters.listing(conn, name, limit=1000)))


def view(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    return rig.rows("rb_wallets", "wallet"), rig.rows("rb_owners", "owner")


def fold_applied(rig: Rig, name: str, skip: Sequence[StoredEvent] = ()) -> tuple[Any, Any]:
    """The fold of the events the stored positions claim, less `skip`."""
    done = {p: last for (_, p), (_, last) in rig.stored_positions(name).items()}
    skipped = {r.position for r in skip}
    return fold_wallets(
        r
        for r in rig.records()
        if r.position <= done.get(_partition(rig, r), 0) and r.position not in skipped
    )


def _partition(rig: Rig, record: StoredEvent) -> int:
    return partition_for(record.aggregate_id, rig.partitions) if rig.partitions > 1 else 0


def status_of(rig: Rig, name: str) -> tuple[str, str | None]:
    with rig.views.connect() as conn:
        row = conn.execute(
            select(projections.c.status, projections.c.last_error).where(projections.c.name == name)
        ).one()
    return row[0], row[1]


def test_stop_mode_stops_before_the_poison_until_fixed(rig: Rig) -> None:
    name = unique("rb_stop")
    Totals = wallet_totals(rig.context, name, poison=frozenset({POISON}), max_retries=2)
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1, i + 2] for i in range(8)}, wallets=wallets)
    save_wallets(rig, {"w3": [5, POISON, 7], "w5": [1]}, wallets=wallets)
    save_wallets(rig, {f"w{i}": [20] for i in range(8)}, wallets=wallets)
    poison = next(r for r in rig.records() if b'"amount":13' in r.payload.encode())

    with pytest.raises(PoisonEvent) as stopped:
        worker(rig, Totals).run(until_caught_up=True)
    error = stopped.value
    assert (error.event_type, error.event_id) == ("rb.deposited", poison.event_id)
    assert isinstance(error.error, ValueError)
    assert error.partition == _partition(rig, poison)

    # Dead-lettered with its error; the position stays before it; the view
    # holds exactly what the positions claim, which excludes the poison.
    [letter] = letters(rig, name)
    assert letter.status == deadletters.STOPPED
    assert (letter.stream_id, letter.position, letter.event_type) == (
        "wallet:w3",
        poison.position,
        "rb.deposited",
    )
    assert "ValueError: cannot take a deposit of 13" in letter.error
    assert letter.record == poison
    status, last_error = status_of(rig, name)
    assert status == "failed"
    assert last_error is not None
    assert "cannot take a deposit of 13" in last_error
    (_, lp) = rig.stored_positions(name)[(f"{rig.context}.wallet", error.partition)]
    assert lp < poison.position
    assert view(rig) == fold_applied(rig, name)

    # Started again unfixed: it stops on the same event, still one dead letter.
    with pytest.raises(PoisonEvent):
        worker(rig, Totals).run(until_caught_up=True)
    assert [letter.status for letter in letters(rig, name)] == [deadletters.STOPPED]

    # Fixed: it gets past the event, and the dead letter is resolved.
    Totals.poison = frozenset()
    worker(rig, Totals).run(until_caught_up=True)
    assert [letter.status for letter in letters(rig, name)] == [deadletters.RESOLVED]
    assert view(rig) == fold_wallets(rig.records())
    assert status_of(rig, name) == ("stopped", None)


def test_park_mode_parks_the_stream_and_replays_it_in_order(rig: Rig) -> None:
    name = unique("rb_park")
    Totals = wallet_totals(
        rig.context, name, poison=frozenset({POISON}), on_failure="park", max_retries=1
    )
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1] for i in range(8)}, wallets=wallets)
    save_wallets(rig, {"w3": [5, POISON, 7], "w6": [2]}, wallets=wallets)
    save_wallets(rig, {"w3": [8], "w1": [3], "w7": [4]}, wallets=wallets)
    records = rig.records()
    poison = next(r for r in records if b'"amount":13' in r.payload.encode())
    behind = [r for r in records if r.aggregate_id == "w3" and r.position > poison.position]
    assert [r.version for r in behind] == [poison.version + 1, poison.version + 2]

    worker(rig, Totals).run(until_caught_up=True)

    # The poison is parked with its error, its stream's later events wait
    # behind it in order, and every other wallet is up to date.
    found = letters(rig, name)
    assert [(x.status, x.position) for x in found] == [
        (deadletters.PARKED, poison.position),
        *[(deadletters.BLOCKED, r.position) for r in behind],
    ]
    assert "ValueError: cannot take a deposit of 13" in found[0].error
    wallets_view = view(rig)[0]
    folded = fold_wallets(
        r for r in records if r.position < poison.position or r.aggregate_id != "w3"
    )[0]
    assert wallets_view == folded
    assert wallets_view["w3"]["last_version"] == poison.version - 1

    # More events: w3's wait behind the parked one, the others flow.
    save_wallets(rig, {"w3": [9], "w2": [6]}, wallets=wallets)
    worker(rig, Totals).run(until_caught_up=True)
    latest = rig.records()[-2:]
    assert [(x.status, x.stream_id) for x in letters(rig, name)][-1] == (
        deadletters.BLOCKED,
        "wallet:w3",
    )
    assert view(rig)[0]["w2"]["last_version"] == latest[-1].version

    # A replay while the handler still fails leaves everything parked.
    assert worker(rig, Totals).replay_parked() == (0, 4)
    assert view(rig)[0]["w3"]["last_version"] == poison.version - 1

    # Fixed: the replay applies the four events of w3 in order (the handler
    # refuses a version out of order), and later events of w3 flow again.
    Totals.poison = frozenset()
    assert worker(rig, Totals).replay_parked() == (4, 0)
    assert {x.status for x in letters(rig, name)} == {deadletters.REPLAYED}
    assert view(rig) == fold_wallets(rig.records())
    save_wallets(rig, {"w3": [10, 11]}, wallets=wallets)
    worker(rig, Totals).run(until_caught_up=True)
    assert view(rig) == fold_wallets(rig.records())
    assert len(letters(rig, name)) == 4
    assert worker(rig, Totals).replay_parked() == (0, 0)


def test_command_line_shows_lists_and_replays_parked_events(rig: Rig) -> None:
    name = unique("rb_cli")
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1] for i in range(5)}, wallets=wallets)
    save_wallets(rig, {"w2": [POISON, 4, 5]}, wallets=wallets)
    broken = rig.env(RBTEST_NAME=name, RBTEST_ON_FAILURE="park", RBTEST_POISON=str(POISON))
    fixed = rig.env(RBTEST_NAME=name, RBTEST_ON_FAILURE="park")

    ran = rig.cli("projection", "run", APP, "--until-caught-up", env=broken)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    shown = rig.cli("projection", "status", APP, "--json", env=broken)
    assert shown.returncode == 0, shown.stderr
    [state] = json.loads(shown.stdout)
    assert (state["name"], state["parked"]) == (name, 3)
    # (On Kafka the end of a partition counts the last transaction's marker.)
    assert state["lag"] <= (rig.partitions if rig.is_kafka else 0)
    text = rig.cli("projection", "status", APP, env=broken)
    assert "3 parked event(s)" in text.stdout, text.stdout

    listed = rig.cli("projection", "deadletters", APP, "--json", env=broken)
    assert listed.returncode == 0, listed.stderr
    found = sorted(json.loads(listed.stdout), key=lambda d: d["position"])
    assert [(d["status"], d["stream_id"], d["event_type"]) for d in found] == [
        ("parked", "wallet:w2", "rb.deposited"),
        ("blocked", "wallet:w2", "rb.deposited"),
        ("blocked", "wallet:w2", "rb.deposited"),
    ]
    assert "cannot take a deposit of 13" in found[0]["error"]
    assert found[1]["error"] == "waits behind a parked event of its stream"

    again = rig.cli("projection", "replay", APP, env=broken)
    assert again.returncode == 1
    assert "replayed 0 parked event(s); 3 still parked" in again.stdout

    replayed = rig.cli("projection", "replay", APP, env=fixed)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 3 parked event(s); 0 still parked" in replayed.stdout
    [state] = json.loads(rig.cli("projection", "status", APP, "--json", env=fixed).stdout)
    assert state["parked"] == 0
    assert view(rig) == fold_wallets(rig.records())


def stopped_on_poison(rig: Rig, name: str, **attributes: Any) -> tuple[type[Any], StoredEvent]:
    """A projection stopped on the deposit of 13 to w3 (and that event)."""
    Totals = wallet_totals(
        rig.context, name, poison=frozenset({POISON}), max_retries=1, **attributes
    )
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1] for i in range(6)}, wallets=wallets)
    save_wallets(rig, {"w3": [5, POISON, 7], "w4": [1]}, wallets=wallets)
    save_wallets(rig, {f"w{i}": [20] for i in range(6)}, wallets=wallets)
    poison = next(r for r in rig.records() if b'"amount":13' in r.payload.encode())
    with pytest.raises(PoisonEvent):
        worker(rig, Totals).run(until_caught_up=True)
    return Totals, poison


def test_a_poison_event_has_one_dead_letter_whatever_the_mode(rig: Rig) -> None:
    name = unique("rb_one")
    Totals, poison = stopped_on_poison(rig, name)
    # Switched to park mode and restarted: the same event's letter is parked, not doubled.
    Totals.on_failure = "park"
    worker(rig, Totals).run(until_caught_up=True)
    found = letters(rig, name)
    assert [(x.status, x.position) for x in found if x.position == poison.position] == [
        (deadletters.PARKED, poison.position)
    ]
    assert sum(x.status in (deadletters.STOPPED, deadletters.PARKED) for x in found) == 1


def test_replay_applies_the_event_the_worker_stopped_on(rig: Rig) -> None:
    name = unique("rb_replay_stop")
    Totals, _ = stopped_on_poison(rig, name)
    assert worker(rig, Totals).replay_parked() == (0, 1)  # still failing: left as it was
    Totals.poison = frozenset()
    assert worker(rig, Totals).replay_parked() == (1, 0)
    [letter] = letters(rig, name)
    assert letter.status == deadletters.REPLAYED
    worker(rig, Totals).run(until_caught_up=True)
    assert view(rig) == fold_wallets(rig.records())


def test_skipping_the_event_the_worker_stopped_on_lets_it_go_on(rig: Rig) -> None:
    name = unique("rb_skip_stop")
    Totals, poison = stopped_on_poison(rig, name)
    [letter] = letters(rig, name)
    done = worker(rig, Totals).skip(letter.id, reason="deposit reversed by the bank", by="ada")
    assert "the worker goes on after it" in done

    worker(rig, Totals).run(until_caught_up=True)  # still unfixed: it never sees it again
    [letter] = letters(rig, name)
    assert (letter.status, letter.resolution, letter.resolved_by) == (
        deadletters.SKIPPED,
        "deposit reversed by the bank",
        "ada",
    )
    assert letter.resolved_at is not None
    assert poison in rig.records()  # the log keeps it
    assert view(rig) == fold_wallets(r for r in rig.records() if r.position != poison.position)
    with pytest.raises(ConfigurationError, match="only parked, blocked and stopped"):
        worker(rig, Totals).skip(letter.id, reason="again", by="ada")


def test_skipping_a_parked_event_releases_its_stream_in_order(rig: Rig) -> None:
    name = unique("rb_skip_park")
    Totals = wallet_totals(
        rig.context, name, poison=frozenset({POISON}), on_failure="park", max_retries=1
    )
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1] for i in range(5)}, wallets=wallets)
    save_wallets(rig, {"w3": [5, POISON, 7, 8], "w1": [2]}, wallets=wallets)
    worker(rig, Totals).run(until_caught_up=True)
    parked = next(x for x in letters(rig, name) if x.status == deadletters.PARKED)

    done = worker(rig, Totals).skip(parked.id, reason="a test deposit", by="ops")

    assert "2 event(s) waiting behind it applied" in done
    statuses = sorted(x.status for x in letters(rig, name))
    assert statuses == [deadletters.REPLAYED, deadletters.REPLAYED, deadletters.SKIPPED]
    poison = parked.position
    assert view(rig) == fold_wallets(r for r in rig.records() if r.position != poison)
    save_wallets(rig, {"w3": [9]}, wallets=wallets)
    worker(rig, Totals).run(until_caught_up=True)  # the stream flows again
    assert view(rig) == fold_wallets(r for r in rig.records() if r.position != poison)


def test_command_line_skips_and_shows_the_decision(rig: Rig) -> None:
    name = unique("rb_cli_skip")
    wallets: dict[str, RbWallet] = {}
    save_wallets(rig, {f"w{i}": [i + 1] for i in range(4)}, wallets=wallets)
    save_wallets(rig, {"w2": [POISON, 4]}, wallets=wallets)
    broken = rig.env(RBTEST_NAME=name, RBTEST_POISON=str(POISON))

    ran = rig.cli("projection", "run", APP, "--until-caught-up", env=broken)
    assert ran.returncode == 1
    [letter] = json.loads(rig.cli("projection", "deadletters", APP, "--json", env=broken).stdout)
    assert letter["status"] == "stopped"

    skip = ["projection", "skip", APP, "--id", str(letter["id"]), "--reason", "bad import"]
    done = rig.cli(*skip, "--by", "ops", env=broken)
    assert done.returncode == 0, done.stderr
    assert "the worker goes on after it" in done.stdout
    again = rig.cli(*skip, env=broken)
    assert again.returncode == 1
    assert "only parked, blocked and stopped ones can be skipped" in again.stderr

    shown = rig.cli("projection", "status", APP, env=broken)
    assert "1 skipped dead letter(s)" in shown.stdout
    [letter] = json.loads(rig.cli("projection", "deadletters", APP, "--json", env=broken).stdout)
    assert (letter["status"], letter["resolution"], letter["resolved_by"]) == (
        "skipped",
        "bad import",
        "ops",
    )
    resumed = rig.cli("projection", "run", APP, "--until-caught-up", env=broken)
    assert resumed.returncode == 0, resumed.stderr
