"""The deployment manifests parse, and name commands, options and settings that exist.

Commands are checked against click's own command objects and variables
against the settings model, so a renamed option or setting fails here
before it fails in a deployment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from eventsource.cli import cli
from eventsource.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(DEPLOY.glob("kubernetes/*.yaml"))
UNITS = sorted(DEPLOY.glob("systemd/*.service"))
ENV_FILES = sorted(DEPLOY.glob("systemd/*.env"))
SETTINGS = {f"EVENTSOURCE_{name.upper()}" for name in Settings.model_fields}


# -- checking a command line ---------------------------------------------------


def check_command(argv: list[str]) -> str:
    """Raise AssertionError unless `argv` (after `eventsource`) is a command
    line click would accept by name; return the command's path."""
    command: click.Command = cli
    path = ["eventsource"]
    positionals = 0
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            break
        if token.startswith("-") and len(token) > 1:
            name = token.split("=", 1)[0]
            option = find_option(command, name)
            assert option is not None, f"{' '.join(path)} has no option {name}"
            if "=" not in token and takes_value(option):
                value = next(tokens, None)
                assert value is not None, f"{' '.join(path)} {name} needs a value"
            continue
        if isinstance(command, click.Group):
            sub = command.commands.get(token)
            assert sub is not None, f"{' '.join(path)} has no command {token!r}"
            command, path = sub, [*path, token]
            continue
        positionals += 1
    assert not isinstance(command, click.Group), f"{' '.join(path)} needs a command"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    most = sum(a.nargs if a.nargs > 0 else 10**6 for a in arguments)
    least = sum(max(a.nargs, 1) for a in arguments if a.required)
    assert least <= positionals <= most, f"{' '.join(path)}: {positionals} arguments"
    return " ".join(path)


def find_option(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    if name == "--help":
        return click.Option(["--help"], is_flag=True)
    return None


def takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


def test_the_command_check_refuses_what_click_would() -> None:
    assert check_command(["--log-format=json", "relay", "run", "--once"]) == "eventsource relay run"
    for wrong in (
        ["relay", "start"],
        ["relay", "run", "--no-such-option"],
        ["projection", "run"],
        ["projection", "rebuild", "a:B", "c:D"],
        ["relay"],
    ):
        with pytest.raises(AssertionError):
            check_command(wrong)


# -- Kubernetes ----------------------------------------------------------------


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of a workload, a Job or a CronJob."""
    spec = doc.get("spec", {})
    for template in (
        spec.get("template"),
        spec.get("jobTemplate", {}).get("spec", {}).get("template"),
    ):
        if template:
            pod = template.get("spec", {})
            yield from pod.get("initContainers", [])
            yield from pod.get("containers", [])


def test_the_kubernetes_manifests_parse() -> None:
    assert MANIFESTS
    kinds = set()
    for path, doc in documents():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        assert doc["metadata"].get("name"), path
        kinds.add(doc["kind"])
    assert {"Deployment", "StatefulSet", "Job", "ConfigMap", "Secret"} <= kinds


def test_the_kubernetes_manifests_run_commands_that_exist() -> None:
    commands = set()
    for _, doc in documents():
        for container in containers(doc):
            line = [*container.get("command", []), *container.get("args", [])]
            if line and Path(line[0]).name == "eventsource":
                commands.add(check_command([str(a) for a in line[1:]]))
    assert {
        "eventsource relay run",
        "eventsource projection run",
        "eventsource projection rebuild",
        "eventsource db upgrade",
    } <= commands


def test_the_kubernetes_manifests_set_only_real_settings() -> None:
    named = set()
    for _, doc in documents():
        named |= set(doc.get("data", {}) | doc.get("stringData", {}))
        for container in containers(doc):
            named |= {e["name"] for e in container.get("env", [])}
    ours = {name for name in named if name.startswith("EVENTSOURCE_")}
    assert ours, "no EVENTSOURCE_ variable found"
    assert ours - SETTINGS == set()


def test_workers_are_named_after_their_pods() -> None:
    for _, doc in documents():
        for container in containers(doc):
            args = container.get("args", [])
            if doc["kind"] == "Job" or "run" not in args:
                continue
            env = {e["name"]: e for e in container.get("env", [])}
            source = env["EVENTSOURCE_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert source == "metadata.name"


# -- systemd -------------------------------------------------------------------


def unit_sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), [])
            continue
        key, equals, value = line.partition("=")
        where = f"{path.name}:{number}: {raw!r}"
        assert current is not None, f"{where} is outside a section"
        assert equals, f"{where} is not a key=value line"
        assert re.fullmatch(r"[A-Za-z]+", key), f"{where} has no valid key"
        current.append((key, value))
    return sections


def test_the_systemd_units_parse() -> None:
    assert UNITS
    for path in UNITS:
        sections = unit_sections(path)
        assert {"Unit", "Service"} <= sections.keys(), path.name
        assert any(key == "ExecStart" for key, _ in sections["Service"]), path.name


def test_the_systemd_units_run_commands_that_exist() -> None:
    commands = set()
    for path in UNITS:
        for key, value in unit_sections(path)["Service"]:
            if key != "ExecStart":
                continue
            argv = shlex.split(value.lstrip("-@+!:"))
            assert Path(argv[0]).name == "eventsource", f"{path.name}: {value}"
            commands.add(check_command(argv[1:]))
    assert {"eventsource relay run", "eventsource projection run"} <= commands


def test_the_systemd_units_set_only_real_settings() -> None:
    named = set()
    for path in UNITS:
        for key, value in unit_sections(path)["Service"]:
            if key == "Environment":
                named |= {item.split("=", 1)[0] for item in shlex.split(value)}
    for path in ENV_FILES:
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                named.add(line.split("=", 1)[0].strip())
    ours = {name for name in named if name.startswith("EVENTSOURCE_")}
    assert ours
    assert ours - SETTINGS == set()


# -- the page ------------------------------------------------------------------


def test_the_deployment_page_shows_every_manifest() -> None:
    page = (ROOT / "docs" / "deployment.md").read_text()
    included = set(re.findall(r'--8<-- "([^"]+)"', page))
    files = {str(p.relative_to(ROOT)) for p in sorted(DEPLOY.rglob("*")) if p.is_file()}
    assert files - included == set(), "deploy/ files missing from docs/deployment.md"
    assert included - files == set()
