"""MkDocs hook: parts of pages written from the code, so that they cannot drift.

A page holds a marker, `<!-- generated: NAME -->`, where the generated
part goes:

* `settings`: the table of every `EVENTSOURCE_*` setting, read from the
  pydantic model (`eventsource.settings.Settings`): names, types, defaults
  and each field's docstring.
* `cli`: every command of `eventsource` with its usage and options, asked
  of click's own command objects (their help records are what `--help`
  prints).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from typing import Any

import click
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = re.compile(r"<!-- generated: (\w[\w-]*) -->")


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each marker with what it names."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


def settings_table() -> str:
    """One row per setting: its variable, type, default and meaning."""
    from eventsource.settings import Settings

    rows = [
        "| variable | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(
            f"| `EVENTSOURCE_{name.upper()}` | {type_name(field.annotation)} |"
            f" {default_of(field)} | {description} |"
        )
    return "\n".join(rows)


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `text`, `secret`, `JSON object`, ..."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return type_name(inner[0]) if len(inner) == 1 else " or ".join(map(type_name, inner))
    if typing.get_origin(annotation) is dict:
        return "JSON object"
    names = {str: "text", int: "integer", float: "number", bool: "true/false"}
    if annotation is SecretStr:
        return "secret"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_of(field: FieldInfo) -> str:
    """The default as an operator would write it, or `(unset)`."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(unset)"
    if value == {}:
        return "`{}`"
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def cli_reference() -> str:
    """A section per command, depth first, as `eventsource ... --help` shows it."""
    from eventsource.cli import cli

    return "\n\n".join(command_section(ctx) for ctx in contexts(cli, "eventsource"))


def contexts(
    command: click.Command, name: str, parent: click.Context | None = None
) -> Iterator[click.Context]:
    """A click context for `command` and for each of its subcommands, depth first."""
    ctx = click.Context(command, info_name=name, parent=parent)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name, sub in sorted(command.commands.items()):
            yield from contexts(sub, sub_name, ctx)


def command_section(ctx: click.Context) -> str:
    """The heading, help, usage and options of one command."""
    command = ctx.command
    path = ctx.command_path
    anchor = "-".join(path.split()[1:]) or "eventsource"
    level = "#" * min(2 + path.count(" "), 4) if " " in path else "##"
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    parts = [
        f"{level} `{path}` {{#{anchor}}}",
        help_text(command),
        f"```\n{usage}\n```",
    ]
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    records = [p.get_help_record(ctx) for p in options if p.name != "help"]
    rows = [r for r in records if r is not None]
    if rows:
        table = ["| option | meaning |", "| --- | --- |"]
        for names, text in rows:
            table.append(f"| `{names}` | {escape(text)} |")
        parts.append("\n".join(table))
    if isinstance(command, click.Group):
        subs = ", ".join(
            f"[`{sub}`](#{anchor + '-' + sub if anchor != 'eventsource' else sub})"
            for sub in sorted(command.commands)
        )
        parts.append(f"Commands: {subs}.")
    return "\n\n".join(parts)


def help_text(command: click.Command) -> str:
    """The command's help text, as `--help` prints it (paragraphs kept)."""
    text = command.help or command.short_help or ""
    return escape_paragraphs(click.unstyle(text).strip())


def escape_paragraphs(text: str) -> str:
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


GENERATORS = {"settings": settings_table, "cli": cli_reference}
