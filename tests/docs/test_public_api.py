"""The public API: documented, in the reference, and all that the examples import."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventsource
import eventsource.testing
import eventsource.testing.contracts

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# The modules an application imports; everything else is machinery.
PUBLIC = {
    "eventsource": eventsource,
    "eventsource.testing": eventsource.testing,
    "eventsource.testing.contracts": eventsource.testing.contracts,
}
NAMES = sorted(set(eventsource.__all__) - {"__version__"})


def own_doc(name: str) -> str | None:
    """The docstring `eventsource.<name>` itself declares: a class's own (not
    one inherited from a base class), a function's, or a constant's attribute
    docstring (read from the source, as the API reference reads it)."""
    obj = getattr(eventsource, name)
    if isinstance(obj, type):
        doc = vars(obj).get("__doc__")
        return doc if isinstance(doc, str) else None
    if callable(obj):
        return inspect.getdoc(obj)
    import griffe

    docstring = griffe.load("eventsource", search_paths=[str(ROOT)])[name].docstring
    return docstring.value if docstring is not None else None


def public_members(cls: type) -> Iterator[tuple[str, object]]:
    """Methods and properties a class declares itself, not named with `_`."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, classmethod | staticmethod):
            yield name, value.__func__
        elif isinstance(value, property):
            yield name, value.fget
        elif inspect.isfunction(value):
            yield name, value


@pytest.mark.parametrize("name", NAMES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(eventsource, name)
    assert (own_doc(name) or "").strip(), f"eventsource.{name} has no docstring"
    if isinstance(obj, type):
        undocumented = [m for m, f in public_members(obj) if not (f.__doc__ or "").strip()]
        assert not undocumented, f"eventsource.{name} lacks docstrings on {undocumented}"


def test_the_api_reference_documents_every_public_name() -> None:
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: eventsource\.(\w+)$", pages, re.MULTILINE))
    assert set(NAMES) - documented == set(), "names missing from docs/reference/"
    assert documented - set(NAMES) == set(), "docs/reference/ documents names that are not public"


def python_sources() -> Iterator[tuple[str, str]]:
    """(where, code) of the sample app's modules and the Python blocks of the
    README and the docs."""
    for path in sorted((ROOT / "sample_app").rglob("*.py")):
        yield str(path.relative_to(ROOT)), path.read_text()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(BLOCK.findall(page.read_text())):
            yield f"{page.relative_to(ROOT)} (Python block {i + 1})", block


def private_imports(code: str) -> list[str]:
    """Imports of eventsource's machinery: modules that are not public, and
    names that a public module does not export."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            found += [m for m in modules if m.split(".")[0] == "eventsource" and m not in PUBLIC]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "eventsource":
                continue
            if node.module not in PUBLIC:
                found.append(node.module)
                continue
            exported = set(getattr(PUBLIC[node.module], "__all__", ()))
            found += [f"{node.module}.{a.name}" for a in node.names if a.name not in exported]
    return found


def test_the_sample_app_and_the_examples_import_only_the_public_api() -> None:
    sources = list(python_sources())
    assert any(where.startswith("README.md") for where, _ in sources)
    offenders = {where: bad for where, code in sources if (bad := private_imports(code))}
    assert offenders == {}, "import these from `eventsource` (or make them public there)"


def test_the_check_sees_private_imports() -> None:
    code = (
        "import eventsource.bus.sqllog\n"
        "from eventsource.projections.rebuild import rebuild\n"
        "from eventsource import console, Worker\n"
        "from eventsource.testing import given\n"
    )
    assert private_imports(code) == [
        "eventsource.bus.sqllog",
        "eventsource.projections.rebuild",
        "eventsource.console",
    ]
