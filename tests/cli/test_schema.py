"""`eventsource schema lock|check` as a process, on an app whose event module changes
between runs, as it does between two commits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from eventsource import EventStore
from eventsource.cli.common import describe_url
from tests.cli.conftest import Run, clean_env, error_line
from tests.schema.stored import DRY_APP, append, append_history, record, stream_at

LOCK = "eventsource.schema.lock.json"
NO_PYC = {"PYTHONDONTWRITEBYTECODE": "1"}  # the module is rewritten within the same second

V1 = """
from decimal import Decimal

from eventsource import Event


class ItemAdded(Event):
    sku: str
    quantity: int
    note: str = ""


class CartCheckedOut(Event):
    total: Decimal
"""


def write_app(folder: Path, source: str) -> None:
    (folder / "shop_events.py").write_text(source)


@pytest.fixture(scope="module")
def v1_lock(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The lock file `schema lock` writes for the app at V1 (recorded once per module)."""
    folder = tmp_path_factory.mktemp("v1")
    write_app(folder, V1)
    result = subprocess.run(
        [sys.executable, "-m", "eventsource", "schema", "lock", "--import", "shop_events"],
        env=clean_env(**NO_PYC),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {LOCK}: 2 event type(s), 2 shape(s)\n"
    return (folder / LOCK).read_bytes()


@pytest.fixture
def locked_app(tmp_path: Path, v1_lock: bytes) -> None:
    """The test's folder holds the app at V1 and its lock."""
    write_app(tmp_path, V1)
    (tmp_path / LOCK).write_bytes(v1_lock)


def check(run_cli: Run, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("schema", "check", *args, env=NO_PYC)


FIX = "raise schema_version with an @upcaster from 1"

BREAKING = {
    "removed": (
        V1.replace("    quantity: int\n", ""),
        "ItemAdded v1: field 'quantity' (integer) was removed: consumers still on the recorded"
        f" class need it; put it back, or {FIX}",
    ),
    "retyped": (
        V1.replace("quantity: int", "quantity: float"),
        "ItemAdded v1: field 'quantity' changed type from integer to number: readers of either"
        f" shape may reject the other's values; {FIX}",
    ),
    "new required field": (
        V1.replace('note: str = ""', 'note: str = ""\n    gift: bool'),
        "ItemAdded v1: new field 'gift' (boolean) is required: events stored without it cannot"
        f" be read; give it a default, or {FIX}",
    ),
    "made required": (
        V1.replace('note: str = ""', "note: str"),
        "ItemAdded v1: field 'note' became required: events stored without it cannot be read;"
        f" give it back its default, or {FIX}",
    ),
    "renamed": (
        V1.replace("class CartCheckedOut", "class CheckedOut"),
        "CartCheckedOut v1: no class is registered under this type name, so its stored events"
        " cannot be decoded: renamed to CheckedOut? give that class"
        " event_type = 'CartCheckedOut'",
    ),
    "removed type": (
        V1.split("class CartCheckedOut", maxsplit=1)[0],
        "CartCheckedOut v1: no class is registered under this type name, so its stored events"
        " cannot be decoded: keep a class with event_type = 'CartCheckedOut' (or --import the"
        " module that has it)",
    ),
    "raised without an upcaster": (
        V1.replace("    sku: str\n", "    schema_version = 2\n    sku: str\n"),
        "ItemAdded v1: schema_version is now 2 but no upcaster turns version 1 into 2:"
        " add @upcaster(ItemAdded, from_version=1)",
    ),
}


@pytest.mark.usefixtures("locked_app")
@pytest.mark.parametrize("change", list(BREAKING))
def test_check_fails_with_one_line_per_breaking_change(
    run_cli: Run, tmp_path: Path, change: str
) -> None:
    source, line = BREAKING[change]
    write_app(tmp_path, source)
    result = check(run_cli)
    assert result.stdout.splitlines() == [line]
    assert error_line(result) == f"error: {LOCK}: {line}"
    # The lock refuses to record it, and is left as it was.
    before = (tmp_path / LOCK).read_bytes()
    refused = run_cli("schema", "lock", env=NO_PYC)
    assert error_line(refused) == f"error: {LOCK}: {line}"
    assert f"{LOCK} was not changed (--force records the classes anyway)" in refused.stderr
    assert (tmp_path / LOCK).read_bytes() == before


@pytest.mark.usefixtures("locked_app")
def test_several_problems_are_one_line_each(run_cli: Run, tmp_path: Path) -> None:
    write_app(tmp_path, V1.replace("quantity: int", "quantity: str").replace("total:", "amount:"))
    result = check(run_cli)
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "CartCheckedOut v1",
        "CartCheckedOut v1",
        "ItemAdded v1",
    ]
    assert error_line(result).endswith("(and 2 more)")
    problems = json.loads(check(run_cli, "--json").stdout)["problems"]
    assert [(p["event_type"], p["schema_version"]) for p in problems] == [
        ("CartCheckedOut", 1),
        ("CartCheckedOut", 1),
        ("ItemAdded", 1),
    ]


@pytest.mark.usefixtures("locked_app")
def test_compatible_changes_pass_and_lock_records_them(run_cli: Run, tmp_path: Path) -> None:
    write_app(
        tmp_path,
        V1.replace('note: str = ""', 'note: str = ""\n    gift: bool = False')
        + "\n\nclass CartAbandoned(Event):\n    reason: str\n",
    )
    result = check(run_cli)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{LOCK}: the classes read every recorded shape (2 event type(s), 2 shape(s))\n"
    )
    assert "not recorded yet: CartAbandoned v1: new event type" in result.stderr
    assert "not recorded yet: ItemAdded v1: new optional field(s) 'gift'" in result.stderr
    # --locked also asks for the lock to record them, as CI should.
    assert error_line(check(run_cli, "--locked")) == (
        f"error: {LOCK} does not record 2 compatible change(s) yet: run `eventsource schema"
        " lock` and commit it"
    )
    relocked = run_cli("schema", "lock", env=NO_PYC)
    assert relocked.stdout == f"wrote {LOCK}: 3 event type(s), 3 shape(s)\n"
    assert check(run_cli, "--locked").returncode == 0


@pytest.mark.usefixtures("locked_app")
def test_a_raised_schema_version_with_its_upcaster_keeps_both_shapes(
    run_cli: Run, tmp_path: Path
) -> None:
    write_app(
        tmp_path,
        V1.replace("    sku: str\n    quantity: int\n", "    schema_version = 2\n    sku: str\n")
        + "\n\n@upcaster(ItemAdded, from_version=1)\n"
        "def _drop_quantity(payload):\n"
        '    return {k: v for k, v in payload.items() if k != "quantity"}\n',
    )
    (tmp_path / "shop_events.py").write_text(
        "from eventsource import upcaster\n" + (tmp_path / "shop_events.py").read_text()
    )
    assert check(run_cli).returncode == 0
    assert run_cli("schema", "lock", env=NO_PYC).stdout == (
        f"wrote {LOCK}: 2 event type(s), 3 shape(s)\n"
    )
    versions = json.loads((tmp_path / LOCK).read_text())["events"]["ItemAdded"]["versions"]
    assert list(versions) == ["1", "2"]
    assert "quantity" in versions["1"]["properties"]
    assert "quantity" not in versions["2"]["properties"]
    assert check(run_cli, "--locked").returncode == 0


@pytest.mark.usefixtures("locked_app")
def test_the_lock_names_its_modules_and_is_rewritten_only_when_it_changes(
    run_cli: Run, tmp_path: Path
) -> None:
    lock = json.loads((tmp_path / LOCK).read_text())
    assert lock["modules"] == ["shop_events"]
    assert lock["events"]["ItemAdded"]["class"] == "shop_events:ItemAdded"
    assert lock["events"]["ItemAdded"]["versions"]["1"]["required"] == ["sku", "quantity"]
    before = (tmp_path / LOCK).read_bytes()
    again = run_cli("schema", "lock", env=NO_PYC)
    assert again.stdout == f"{LOCK} is up to date: 2 event type(s), 2 shape(s)\n"
    assert (tmp_path / LOCK).read_bytes() == before


@pytest.mark.usefixtures("locked_app")
def test_a_forced_lock_records_a_break(run_cli: Run, tmp_path: Path) -> None:
    write_app(tmp_path, V1.replace("quantity: int", "quantity: float"))
    forced = run_cli("schema", "lock", "--force", env=NO_PYC)
    assert forced.returncode == 0, forced.stderr
    assert "recorded anyway: ItemAdded v1: field 'quantity' changed type" in forced.stderr
    assert check(run_cli).returncode == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("schema", "check"), f"error: no schema lock at {LOCK}: record one with `eventsource"),
        (("schema", "lock"), "error: name the modules that define your event classes with"),
        (("schema", "lock", "--import", "no_such_module"), "error: --import no_such_module:"),
        (("schema", "lock", "--import", "json"), "error: no event classes are registered after"),
        (("schema", "check", "--sample", "3"), "error: --sample needs --database (see --help)"),
    ],
)
def test_mistakes_are_one_line(
    run_cli: Run, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    assert error_line(run_cli(*args)).startswith(said)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_lock_file_is_one_line(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text("{}")
    assert error_line(check(run_cli)) == (
        f"error: {LOCK} is not a schema lock written by `eventsource schema lock` (events:"
        " Field required); restore it from version control"
    )


# -- --database: a dry run over stored events ------------------------------------------


def url_of(store: EventStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def tables_and_events(store: EventStore) -> tuple[list[str], int]:
    tables = sorted(sa.inspect(store.engine).get_table_names())
    return tables, len(store.read_log(0, 10_000))


def test_check_database_reports_what_fails_by_type_and_version(
    run_cli: Run, tmp_path: Path, store: EventStore
) -> None:
    p = append_history(store)
    (tmp_path / "dry_app.py").write_text(DRY_APP)
    before = tables_and_events(store)
    url = url_of(store)
    result = check(run_cli, "--database", url, "--import", "dry_app")
    lines = result.stdout.splitlines()
    assert [line.split(", first at")[0] for line in lines] == [
        "dry.Added v1: 1 of 5 checked failed to decode (5 stored)",
        "dry.Added v2: 3 stored, 3 checked, all decoded",
        "dry.Removed v1: 2 of 2 checked failed to decode (2 stored)",
        "dry.Unknown v1: 1 of 1 checked failed to decode (1 stored)",
    ]
    assert lines[0].endswith(
        f"first at position {p[4]} (stream {stream_at(store, p[4])!r} version 1):"
        " KeyError: 'quantity'"
    )
    assert f"first at position {p[5]} " in lines[2]
    assert lines[3].endswith("no event class is registered under this type name")
    assert error_line(result) == f"error: {describe_url(url)}: {lines[0]} (and 2 more)"
    assert f"decoding {describe_url(url)}: done: {p[-1]:,}/{p[-1]:,} positions" in result.stderr
    assert tables_and_events(store) == before  # read-only

    sampled = check(run_cli, "--url", url, "--import", "dry_app", "--sample", "2", "--json")
    report = json.loads(sampled.stdout)
    assert report["complete"] is True
    assert [
        (t["event_type"], t["schema_version"], t["stored"], t["checked"], t["failed"])
        for t in report["types"]
    ] == [
        ("dry.Added", 1, 5, 2, 0),
        ("dry.Added", 2, 3, 2, 0),
        ("dry.Removed", 1, 2, 2, 2),
        ("dry.Unknown", 1, 1, 1, 1),
    ]
    assert error_line(sampled).startswith(f"error: {describe_url(url)}: dry.Removed v1: 2 of 2")


def test_check_database_passes_when_every_event_decodes(
    run_cli: Run, tmp_path: Path, store: EventStore
) -> None:
    append(
        store,
        record("dry.Added", 1, '{"sku": "a", "quantity": 1}'),
        record("dry.Added", 2, '{"sku": "b", "count": 2}'),
        record("dry.Removed", 1, '{"sku": "c"}'),
    )
    (tmp_path / "dry_app.py").write_text(DRY_APP)
    # The modules come from the lock when --import is not given.
    assert run_cli("schema", "lock", "--import", "dry_app", env=NO_PYC).returncode == 0
    url = url_of(store)
    result = check(run_cli, "--database", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dry.Added v1: 1 stored, 1 checked, all decoded",
        "dry.Added v2: 1 stored, 1 checked, all decoded",
        "dry.Removed v1: 1 stored, 1 checked, all decoded",
        f"{describe_url(url)}: every checked event decodes (up to position"
        f" {store.head_position():,})",
    ]


def test_check_database_never_creates_or_migrates_one(
    run_cli: Run, tmp_path: Path, backend: str, database_url: str
) -> None:
    (tmp_path / "dry_app.py").write_text(DRY_APP)
    line = error_line(check(run_cli, "--database", database_url, "--import", "dry_app"))
    if backend == "sqlite":
        assert line.startswith("error: no database at ")
        assert not Path(make_url(database_url).database or "").exists()
        return
    assert line.endswith(
        "holds no eventsource events table; is it the right database? (`eventsource db"
        " upgrade` creates the tables)"
    )
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.slow
def test_check_database_stops_on_sigint_and_says_it_is_incomplete(
    tmp_path: Path, database_url_factory: Callable[[str], str]
) -> None:
    with EventStore(database_url_factory("sqlite"), context="test") as store:
        store.create_schema()
        for _ in range(15):
            batch = [record("dry.Added", 2, '{"sku": "s", "count": 1}') for _ in range(10_000)]
            append(store, *batch)
        url = url_of(store)
    (tmp_path / "dry_app.py").write_text(DRY_APP)
    command = ["schema", "check", "--database", url, "--import", "dry_app"]
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsource", *command],
        env=clean_env(**NO_PYC),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the first batch is decoded
    assert "positions" in first, first
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "of 150,000: the events after it were not checked" in err
    assert "stopped after " in err  # the progress says so too
    [line] = out.splitlines()
    assert line.startswith("dry.Added v2: ")
    assert not line.startswith("dry.Added v2: 150,000 stored")
