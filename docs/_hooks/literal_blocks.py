"""Griffe extension: the docstrings' `::` literal blocks become Python code blocks.

The project's docstrings mark examples the reStructuredText way (a line
ending in `::`, then an indented block); the API reference renders
Markdown, where that would read as a stray `::` and plain text.
"""

from __future__ import annotations

import textwrap
from typing import Any

import griffe


class LiteralBlocks(griffe.Extension):
    """Rewrites each docstring's literal blocks as fenced code."""

    def on_object(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fenced(obj.docstring.value)


def fenced(text: str) -> str:
    """`text` with every `::` literal block turned into a ```python block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        intro = line.rstrip()[:-2].rstrip()
        if intro:
            out.append(intro + ":")
        depth = len(line) - len(line.lstrip())
        i += 1
        block: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > depth
        ):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
            i -= 1
        code = textwrap.dedent("\n".join(block)).strip("\n")
        out.extend(["", "```python", *code.splitlines(), "```", ""])
    return "\n".join(out)
