"""What changed between two JSON Schemas of one event's payload, field by field.

Titles, descriptions and defaults are not compared (a default is only used
when a field is absent, and every stored payload holds every field its
producer knew). A model's `additionalProperties: false` is not compared
either: decoding ignores fields a class does not know, so a field added by a
newer producer never fails an older reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

JsonSchema = dict[str, Any]
ChangeKind = Literal["added", "removed", "added_required", "became_required", "retyped"]
# The changes no reader notices: a new optional field (older readers ignore it).
COMPATIBLE: frozenset[ChangeKind] = frozenset({"added"})

_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)
# Keys whose value is one subschema, with the suffix they add to a field's path.
_SUBSCHEMA = {"items": "[]", "additionalProperties": "{}", "contains": "[]", "not": ""}
# Keys whose value is a list of subschemas, compared position by position.
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
# Validation keywords worth naming when a field's type is described.
_CONSTRAINTS = (
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
)
_REF_PREFIX = "#/$defs/"


@dataclass(frozen=True)
class Change:
    """One difference between two shapes: `field` is a dotted path (`address.city`,
    `lines[].sku`); `old` and `new` describe its type before and after. All but
    `added` (a new optional field) are noticed by some reader."""

    field: str
    kind: ChangeKind
    old: str = ""
    new: str = ""


def changes(old: JsonSchema, new: JsonSchema) -> list[Change]:
    """The changes from the payload schema `old` to `new`, in field order."""
    comparison = _Comparison(old, new)
    comparison.fields(comparison.old.resolve(old), comparison.new.resolve(new), "")
    return comparison.found


class _Side:
    """One schema, with its `$defs` for resolving references."""

    def __init__(self, root: JsonSchema) -> None:
        self.defs: dict[str, JsonSchema] = root.get("$defs", {})

    def resolve(self, node: JsonSchema) -> JsonSchema:
        """The node a `$ref` points at (with the referring node's own keys on top)."""
        seen: set[str] = set()
        while isinstance(ref := node.get("$ref"), str) and ref.startswith(_REF_PREFIX):
            name = ref[len(_REF_PREFIX) :]
            target = self.defs.get(name)
            if target is None or name in seen:
                break
            seen.add(name)
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def describe(self, node: JsonSchema) -> str:
        """A field's type in a few words: `string`, `integer | null`, `list[Address]`."""
        resolved = self.resolve(node)
        if _is_model(resolved):
            return str(resolved.get("title") or "object")
        for union in ("anyOf", "oneOf"):
            if isinstance(resolved.get(union), list):
                return " | ".join(self.describe(option) for option in resolved[union])
        if "enum" in resolved:
            return "one of " + ", ".join(json.dumps(v) for v in resolved["enum"])
        if "const" in resolved:
            return "exactly " + json.dumps(resolved["const"])
        kind = resolved.get("type")
        if kind == "array":
            text = self._describe_array(resolved)
        elif kind == "object" and isinstance(resolved.get("additionalProperties"), dict):
            text = f"dict[str, {self.describe(resolved['additionalProperties'])}]"
        elif isinstance(kind, str):
            text = kind
        elif isinstance(kind, list):
            text = " | ".join(str(k) for k in kind)
        else:
            text = "any"
        limits = [f"{key}={resolved[key]}" for key in _CONSTRAINTS if key in resolved]
        return f"{text} ({', '.join(limits)})" if limits else text

    def _describe_array(self, node: JsonSchema) -> str:
        if isinstance(node.get("prefixItems"), list):
            return f"tuple[{', '.join(self.describe(item) for item in node['prefixItems'])}]"
        items = node.get("items")
        return f"list[{self.describe(items) if isinstance(items, dict) else 'any'}]"


class _Comparison:
    def __init__(self, old: JsonSchema, new: JsonSchema) -> None:
        self.old = _Side(old)
        self.new = _Side(new)
        self.found: list[Change] = []
        # The pairs of model references being compared, so that a recursive
        # model (a tree of itself) is compared once rather than for ever.
        self._open: set[tuple[str, str]] = set()

    def fields(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        """Compare two models field by field, recording each change."""
        old_fields: dict[str, JsonSchema] = old.get("properties", {})
        new_fields: dict[str, JsonSchema] = new.get("properties", {})
        old_required = set(old.get("required", []))
        new_required = set(new.get("required", []))
        for name, schema in old_fields.items():
            if name not in new_fields:
                self.found.append(Change(_join(path, name), "removed", self.old.describe(schema)))
        for name, schema in new_fields.items():
            field = _join(path, name)
            if name not in old_fields:
                kind: ChangeKind = "added_required" if name in new_required else "added"
                self.found.append(Change(field, kind, new=self.new.describe(schema)))
                continue
            if name in new_required and name not in old_required:
                self.found.append(Change(field, "became_required"))
            if self.differs(old_fields[name], schema, field):
                old_type = self.old.describe(old_fields[name])
                self.found.append(Change(field, "retyped", old_type, self.new.describe(schema)))

    def differs(self, old: JsonSchema, new: JsonSchema, path: str) -> bool:
        """Whether a value of `old`'s type may read differently as `new`'s.

        Models nested in the field are compared field by field instead: their
        changes are recorded under their own paths, and do not count as a
        change of this field's type.
        """
        refs = (old.get("$ref"), new.get("$ref"))
        if isinstance(refs[0], str) and isinstance(refs[1], str):
            pair = (refs[0], refs[1])
            if pair in self._open:
                return False
            self._open.add(pair)
            try:
                return self._differs(self.old.resolve(old), self.new.resolve(new), path)
            finally:
                self._open.discard(pair)
        return self._differs(self.old.resolve(old), self.new.resolve(new), path)

    def _differs(self, old: JsonSchema, new: JsonSchema, path: str) -> bool:
        if _is_model(old) and _is_model(new):
            self.fields(old, new, path)
            return False
        if _is_model(old) or _is_model(new):
            return True
        different = False
        for key in (set(old) | set(new)) - _ANNOTATIONS - {"$ref", "$defs"}:
            a, b = old.get(key), new.get(key)
            if key in _SUBSCHEMA and isinstance(a, dict) and isinstance(b, dict):
                different |= self.differs(a, b, path + _SUBSCHEMA[key])
            elif key in _SUBSCHEMA_LISTS and isinstance(a, list) and isinstance(b, list):
                if len(a) != len(b):
                    different = True
                    continue
                for x, y in zip(a, b, strict=True):
                    both = isinstance(x, dict) and isinstance(y, dict)
                    different |= self.differs(x, y, path) if both else x != y
            elif a != b:
                different = True
        return different


def _is_model(node: JsonSchema) -> bool:
    return node.get("type") == "object" and isinstance(node.get("properties"), dict)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
