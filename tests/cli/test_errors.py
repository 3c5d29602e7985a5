"""Everyday mistakes get one line that says what was wrong and what to do, never a
traceback, and nothing is created or changed by a command that failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from eventsource import EventStore, Repository
from tests.cli.conftest import Run, error_line
from tests.conftest import require_postgres, unique
from tests.projections.apps import PjAccount

APP = "tests.projections.apps:EnvBalances"


def pg_url(**changes: object) -> str:
    url = make_url(require_postgres()).set(drivername="postgresql+psycopg", **changes)
    return url.render_as_string(hide_password=False)


@pytest.mark.postgres
def test_a_wrong_password(run_cli: Run) -> None:
    line = error_line(
        run_cli("db", "upgrade", env={"EVENTSOURCE_DATABASE_URL": pg_url(password="wrong")})
    )
    assert "password authentication failed" in line
    assert "check the user and password" in line
    assert "wrong" not in line  # the password is never shown


def test_a_database_server_that_does_not_listen(run_cli: Run) -> None:
    url = "postgresql://user:secret@127.0.0.1:1/db"
    line = error_line(run_cli("projection", "status", APP, "--url", url))
    assert "Connection refused" in line
    assert "is the server running" in line
    assert "secret" not in line


def test_a_sqlite_folder_that_does_not_exist(run_cli: Run) -> None:
    line = error_line(run_cli("db", "upgrade", "--url", "sqlite:////nonexistent/dir/x.db"))
    assert "unable to open database file (does its folder exist?)" in line


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("notaurl", "'notaurl' is not a database URL; use sqlite:///"),
        ("sqlite://data/x.db", "a SQLite file is sqlite:///data/x.db"),
    ],
)
def test_a_malformed_url(run_cli: Run, url: str, said: str, tmp_path: Path) -> None:
    assert said in error_line(run_cli("db", "upgrade", "--url", url))
    assert list(tmp_path.iterdir()) == []


def test_bad_json_in_a_variable_names_the_variable(run_cli: Run, tmp_path: Path) -> None:
    env = {"EVENTSOURCE_STORES": "{bad", "PJTEST_CONTEXT": "c"}
    line = error_line(run_cli("projection", "status", APP, env=env))
    assert "EVENTSOURCE_STORES is not valid JSON" in line


def test_modules_are_found_from_the_current_folder_or_app_dir(run_cli: Run, tmp_path: Path) -> None:
    app = tmp_path / "app" / "library"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "views.py").write_text(
        "from eventsource import Projection, handles, Event\n"
        "class Lent(Event):\n    book: str\n"
        "class Loans(Projection):\n    topics = ['library.book']\n"
        "    @handles(Lent)\n    def _lent(self, event, view):\n        pass\n"
    )
    env = {"EVENTSOURCE_DATABASE_URL": f"sqlite:///{tmp_path}/library.db"}
    (tmp_path / "library.db").touch()
    from_app = run_cli("projection", "status", "library.views:Loans", env=env, cwd=tmp_path / "app")
    assert "No module named" not in from_app.stderr
    elsewhere = run_cli("projection", "status", "library.views:Loans", env=env, cwd=tmp_path)
    assert "--app-dir" in error_line(elsewhere)
    with_dir = run_cli(
        "--app-dir", str(tmp_path / "app"), "projection", "status", "library.views:Loans", env=env
    )
    assert "No module named" not in with_dir.stderr


def test_a_context_given_two_databases_is_refused(run_cli: Run, tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    env = {
        "EVENTSOURCE_CONTEXT": "library",
        "EVENTSOURCE_STORES": json.dumps({"library": a}),
        "PJTEST_CONTEXT": "library",
    }
    line = error_line(run_cli("projection", "run", APP, "--url", b, "--until-caught-up", env=env))
    assert "context 'library' has two databases" in line
    assert not (tmp_path / "a.db").exists()
    assert not (tmp_path / "b.db").exists()


def test_read_only_commands_never_create_a_database(run_cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/typo.db"
    env = {"PJTEST_CONTEXT": "c"}
    for args in (
        ("projection", "status", APP),
        ("projection", "deadletters", APP),
        ("projection", "wait", APP, "--position", "1"),
        ("events", "tail", "--idle-exit", "0.1"),
    ):
        line = error_line(run_cli(*args, "--url", url, env=env))
        assert f"no database at {tmp_path}/typo.db" in line
    assert not (tmp_path / "typo.db").exists()


def test_a_command_would_not_create_a_database_from_the_default(
    run_cli: Run, tmp_path: Path
) -> None:
    line = error_line(run_cli("db", "upgrade"))
    assert "set EVENTSOURCE_DATABASE_URL or pass --url" in line
    line = error_line(run_cli("relay", "run", "--once"))
    assert "never runs on the embedded default" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("projection", "rebuild", APP, "--batch-size", "0"), "'--batch-size': 0 is not in the"),
        (("projection", "run", APP, "--batch-size", "-5"), "'--batch-size': -5 is not in the"),
        (("projection", "deadletters", APP, "--limit", "0"), "'--limit': 0 is not in the"),
        (("projection", "wait", APP, "--position", "-1"), "'--position': -1 is not in the"),
        (("relay", "run", "--batch-size", "0"), "'--batch-size': 0 is not in the"),
    ],
)
def test_counts_and_positions_have_bounds(run_cli: Run, args: tuple[str, ...], said: str) -> None:
    assert said in error_line(run_cli(*args))


def test_waiting_for_a_position_beyond_the_log_says_where_it_ends(
    run_cli: Run, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/source.db"
    context = unique("src")
    with EventStore(url, context=context) as store:
        store.create_schema()
        position = Repository(store, PjAccount).save(PjAccount.open("a-1", "owner"))
    env = {"PJTEST_CONTEXT": context, "EVENTSOURCE_CONTEXT": context}
    line = error_line(
        run_cli("projection", "wait", APP, "--url", url, "--position", "99999999", env=env)
    )
    assert (
        f"beyond the end of the log of context {context!r} (its last position is {position})"
        in line
    )


def test_a_configuration_error_reports_no_progress(run_cli: Run, tmp_path: Path) -> None:
    # The class cannot run (its topic's store is not configured): no "done: 0 events" first.
    env = {
        "EVENTSOURCE_DATABASE_URL": f"sqlite:///{tmp_path}/views.db",
        "PJTEST_CONTEXT": "elsewhere",
    }
    result = run_cli("projection", "run", APP, "--until-caught-up", env=env)
    assert "whose event store is not configured" in error_line(result)
    assert "done:" not in result.stderr


def test_a_mistyped_variable_is_named_with_the_closest_setting(run_cli: Run) -> None:
    result = run_cli("db", "upgrade", env={"EVENTSOURCE_DATABSE_URL": "sqlite:///x.db"})
    assert (
        "EVENTSOURCE_DATABSE_URL is not a setting eventsource reads;"
        " did you mean EVENTSOURCE_DATABASE_URL?"
    ) in result.stderr
    error_line(result)  # and it does not fall back to the default database in silence


def test_show_config_masks_secrets(run_cli: Run, tmp_path: Path) -> None:
    env = {
        "EVENTSOURCE_DATABASE_URL": "postgresql://app:s3cret@db:5432/orders",
        "EVENTSOURCE_KAFKA_SASL_PASSWORD": "kafka-s3cret",
        "EVENTSOURCE_KAFKA_CONFIG": '{"sasl.oauthbearer.config": "token-s3cret"}',
    }
    result = run_cli("--show-config", "--version", env=env)
    shown = result.stdout + result.stderr
    assert "s3cret" not in shown
    result = run_cli("--show-config", "db", "upgrade", "--url", "notaurl", env=env)
    assert "EVENTSOURCE_DATABASE_URL=postgresql://app:***@db:5432/orders" in result.stdout
    assert "EVENTSOURCE_KAFKA_SASL_PASSWORD=***" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


def test_traceback_shows_the_whole_error_when_asked(run_cli: Run) -> None:
    result = run_cli("--traceback", "db", "upgrade", "--url", "sqlite:////nonexistent/dir/x.db")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr


def test_db_upgrade_creates_the_tables(run_cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    result = run_cli("db", "upgrade", "--url", url)
    assert result.returncode == 0, result.stderr
    assert f"{url}: schema is up to date" in result.stdout
    again = run_cli("db", "upgrade", "--url", url)
    assert again.returncode == 0, again.stderr
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        assert {"events", "snapshots", "projection_positions"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_json_logs_are_one_object_per_line_naming_the_projection(
    run_cli: Run, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/source.db"
    context = unique("jsonlog")
    with EventStore(url, context=context) as store:
        store.create_schema()
        Repository(store, PjAccount).save(PjAccount.open("a-1", "owner"))
    env = {
        "PJTEST_CONTEXT": context,
        "EVENTSOURCE_CONTEXT": context,
        "EVENTSOURCE_WORKER_NAME": "worker-7",
        "PJTEST_NAME": "pj_json_logs",
    }
    result = run_cli(
        "--log-format", "json", "projection", "run", APP, "--url", url, "--until-caught-up", env=env
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message", "host", "pid", "worker"} <= set(entry)
        assert entry["worker"] == "worker-7"
    from_worker = [e for e in entries if e["logger"].startswith("eventsource.projections")]
    assert from_worker
    assert {e.get("projection") for e in from_worker} == {"pj_json_logs"}
    assert any(e["logger"] == "eventsource.progress" for e in entries)
