"""Typed reads from a YAML node tree that remember where each value came from.

Every problem is collected (not raised at the first one) with file, line, field
path, what is wrong and what is allowed, so an operator fixes a file in one go.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import yaml

E = TypeVar("E", bound=Enum)
T = TypeVar("T")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
Spec = dict[str, Callable[[yaml.Node, str], Any]]
"""Readers of a mapping's keys, one per key."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file."""

    filename: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.filename}:{self.line}: {where}{self.message}"


@dataclass
class Reader:
    """Collects problems while reading a composed YAML document."""

    filename: str
    problems: list[Problem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    def error(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else self.lines.get(path, 1)
        self.problems.append(Problem(self.filename, line, path, message))

    def error_at(self, path: str, message: str) -> None:
        """A problem found after reading (cross-field), placed at the field's line."""
        self.problems.append(Problem(self.filename, self.line_of(path), path, message))

    def line_of(self, path: str) -> int:
        while path and path not in self.lines:
            path = path.rpartition(".")[0]
        return self.lines.get(path, 1)

    # --- structure -----------------------------------------------------------------

    def mapping(
        self, node: yaml.Node, path: str, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> dict[str, yaml.Node] | None:
        self.lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        allowed = list(allowed)
        out: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key not in allowed:
                self.error(
                    key_node,
                    sub,
                    f"unknown key '{key}'{_suggest(key, allowed)}; allowed: {', '.join(allowed)}",
                )
            elif key in out:
                self.error(key_node, sub, f"'{key}' given twice")
            else:
                out[key] = value
                self.lines[sub] = value.start_mark.line + 1
        for key in required:
            if key not in out:
                self.error(node, path, f"missing required key '{key}'")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        self.lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, path, f"expected a list, got {_kind(node)}")
            return []
        return list(node.value)

    def items(self, node: yaml.Node, path: str) -> list[tuple[str, yaml.Node]]:
        """List items with a readable path: section[name] when the item has a name."""
        out = []
        for i, item in enumerate(self.sequence(node, path)):
            label = str(i)
            if isinstance(item, yaml.MappingNode):
                for key, value in item.value:
                    if key.value == "name" and isinstance(value, yaml.ScalarNode):
                        label = str(value.value)
            sub = f"{path}[{label}]"
            self.lines[sub] = item.start_mark.line + 1
            out.append((sub, item))
        return out

    # --- scalars ---------------------------------------------------------------------

    def _scalar(self, node: yaml.Node, path: str, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"expected {what}, got {_kind(node)}")
            return None
        return str(node.value)

    def text(self, node: yaml.Node, path: str) -> str | None:
        value = self._scalar(node, path, "a string")
        if value is not None and not value.strip():
            self.error(node, path, "must not be empty")
            return None
        return value

    def integer(self, node: yaml.Node, path: str, lo: int, hi: int) -> int | None:
        raw = self._scalar(node, path, "a whole number")
        if raw is None:
            return None
        try:
            value = int(raw, 0)
        except ValueError:
            self.error(node, path, f"'{raw}' is not a whole number")
            return None
        if not lo <= value <= hi:
            self.error(node, path, f"{value} is out of range; allowed: {lo} to {hi}")
            return None
        return value

    def number(self, node: yaml.Node, path: str, lo: float, hi: float) -> float | None:
        raw = self._scalar(node, path, "a number")
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            self.error(node, path, f"'{raw}' is not a number from {lo} to {hi}")
            return None
        return value

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        raw = self._scalar(node, path, "true or false")
        if raw is None:
            return None
        lowered = raw.lower()
        if lowered in ("true", "yes", "on"):
            return True
        if lowered in ("false", "no", "off"):
            return False
        self.error(node, path, f"'{raw}' is not true or false")
        return None

    def duration(
        self, node: yaml.Node, path: str, lo_ms: int = 0, hi_ms: int = 86_400_000
    ) -> int | None:
        """'200ms', '1s', '1.5s', '2m' -> milliseconds; a bare number has no unit: error."""
        raw = self._scalar(node, path, "a duration")
        if raw is None:
            return None
        match = _DURATION.match(raw)
        if match is None:
            self.error(node, path, f"'{raw}' is not a duration; write e.g. 200ms, 1s, 1.5s, 2m")
            return None
        ms = round(float(match.group(1)) * _UNIT_MS[match.group(2)])
        if not lo_ms <= ms <= hi_ms:
            self.error(node, path, f"{raw} is out of range; allowed: {lo_ms}ms to {hi_ms}ms")
            return None
        return ms

    def address(self, node: yaml.Node, path: str) -> str | None:
        raw = self._scalar(node, path, "an IP address")
        if raw is None:
            return None
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            self.error(
                node,
                path,
                f"'{raw}' is not an IPv4 or IPv6 address (names are not "
                "resolved: a signaling peer's addresses must not depend on DNS)",
            )
            return None

    def choice(self, node: yaml.Node, path: str, enum: type[E]) -> E | None:
        raw = self._scalar(node, path, "a name")
        allowed = [str(m.value) for m in enum]
        if raw is not None and raw in allowed:
            return enum(raw)
        if raw is not None:
            self.error(
                node,
                path,
                f"'{raw}' is not allowed{_suggest(raw, allowed)}; allowed: {' | '.join(allowed)}",
            )
        return None

    def list_of(
        self, node: yaml.Node, path: str, read: Callable[[yaml.Node, str], T | None]
    ) -> list[T] | None:
        values = []
        for i, item in enumerate(self.sequence(node, path)):
            value = read(item, f"{path}[{i}]")
            if value is None:
                return None
            values.append(value)
        return values


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"'{node.value}'" if node.value != "" else "nothing"


def _suggest(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_fields(
    r: Reader, node: yaml.Node, path: str, spec: Spec, required: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """Read the keys of a mapping with one reader each; None if anything was wrong."""
    found = r.mapping(node, path, spec, required)
    if found is None:
        return None
    before = len(r.problems)
    out = {}
    for key, value in found.items():
        got = spec[key](value, f"{path}.{key}" if path else key)
        if got is not None:
            out[key] = got
    missing = any(k not in found for k in required)
    return None if len(r.problems) > before or missing else out
