"""docs/configuration.md (and docs/diameter.md for node.diameter) document every
key of peers.yaml, with the default the loader really produces.

The keys are not listed here: they are discovered from the loader itself. Giving
it a mapping with an unknown key makes it answer with every key allowed there
("unknown key 'zz_probe'; allowed: ..."), and with the keys that are required;
a wrong scalar makes it name the kind of value and its range. Walking that from
the root yields every key with its kind, range and requiredness. Defaults are
read off the dataclasses of a parsed minimal configuration, formatted the way
the tables write them (`300ms`, `16`, `true`, `[]`, `127.0.0.1:9464`).

So the tests fail when a key is added to the loader without a table row, when a
documented default, range or choice drifts from the code, when a row names a key
that no longer exists, and when a field is added to the model but no YAML key
sets it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from sigmw.config import model as m
from sigmw.config.diameter import RELAY_APPLICATION
from sigmw.config.loader import ConfigError, parse_config
from sigmw.config.yamlread import Problem, Reader

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONFIG_MD = "configuration.md"
DIAMETER_MD = "diameter.md"

SECTIONS: dict[str, tuple[str, str]] = {
    "": (CONFIG_MD, "`metrics`, `admin`, `readiness`"),
    "node": (CONFIG_MD, "`node` (required)"),
    "node.diameter": (DIAMETER_MD, "`node.diameter`"),
    "listen[]": (CONFIG_MD, "`listen[]`"),
    "listen[].sctp": (CONFIG_MD, "`sctp` (per peer and per listener)"),
    "peers[]": (CONFIG_MD, "`peers[]`"),
    "peers[].sctp": (CONFIG_MD, "`sctp` (per peer and per listener)"),
    "routes.ppid[]": (CONFIG_MD, "`routes.ppid[]`"),
    "routes.diameter[]": (CONFIG_MD, "`routes.diameter[]`"),
}
"""YAML path prefix -> (page, heading) of the table documenting the keys below it.
A key belongs to the longest prefix; its row names it relative to that prefix."""

RENAMES: dict[str, str] = {
    "node.m3ua.point_code": "node.m3ua_point_code",
    "node.diameter.origin_host": "node.diameter.host",
    "node.diameter.origin_realm": "node.diameter.realm",
    "peers[].diameter.origin_host": "peers[].diameter.host",
    "peers[].diameter.origin_realm": "peers[].diameter.realm",
    "routes.ppid[]": "ppid_routes[]",
    "routes.diameter[].peers": "diameter_routes[].to",
    "routes.diameter[]": "diameter_routes[]",
    "metrics.listen": "metrics",
    "admin.listen": "admin",
}
"""YAML key path -> the Config attribute path it sets, where the two differ."""

OVERRIDES: dict[str, str] = {
    "peers[].port": "required for `connect`",  # accept peers get 0: not a default
    "peers[].diameter.host": "required in `diameter`",  # host or origin_host
    "peers[].diameter.realm": "required in `diameter`",
    "peers[].diameter.origin_host": "required in `diameter`",
    "peers[].diameter.origin_realm": "required in `diameter`",
    "node.diameter.vendor_applications[].auth": "exactly one",  # of auth and acct
    "node.diameter.vendor_applications[].acct": "exactly one",
    "readiness.min_peers_up": "1 (0 with no peers)",  # None, resolved by the daemon
}
"""The documented default of keys whose default is a rule, not a value."""

MINIMAL = """
node:
  name: relay
  diameter: {origin_host: relay.example.net, origin_realm: example.net}
listen:
  - {name: l, protocol: diameter, transport: sctp, addresses: [127.0.0.1], port: 3868}
peers:
  - name: p
    protocol: diameter
    transport: sctp
    role: connect
    addresses: [127.0.0.2]
    port: 3868
    diameter: {host: p.example.net, realm: example.net}
routes:
  ppid: [{ppid: 1, to: [p]}]
  diameter: [{realm: example.net, peers: [{peer: p}]}]
"""
"""Only what is required, plus one item of each list so its items' defaults show."""

PROBE = "zz_probe"
_DURATION_LIMITS = inspect.signature(Reader.duration).parameters
GENERIC_DURATION = (_DURATION_LIMITS["lo_ms"].default, _DURATION_LIMITS["hi_ms"].default)
"""A duration with no range of its own; the Units paragraph states it once."""


@dataclass(frozen=True)
class Key:
    path: str
    """e.g. 'peers[].sctp.rto.min'; '[]' stands for any item of a list."""
    shape: str
    """'mapping', 'mappings' (a list of them), 'list' (of scalars) or 'scalar'."""
    kind: str
    """What the scalar (or list item) is: duration, integer, number, boolean,
    choice, address or text."""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False


# --- discovering the keys from the loader ---------------------------------------------------


def _segments(path: str) -> list[str]:
    return [s for s in re.split(r"\.|(\[\])", path) if s]


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and not key.startswith("[") else prefix + key


def _where(path: str) -> str:
    """The path as the loader names it in problems: items are [0]."""
    return path.replace("[]", "[0]")


def _problems(path: str, value: object) -> list[Problem]:
    doc: object = value
    for seg in reversed(_segments(path)):
        doc = [doc] if seg == "[]" else {seg: doc}
    try:
        parse_config(yaml.safe_dump(doc))
    except ConfigError as exc:
        return exc.problems
    return []


def _message(path: str, value: object) -> str:
    found = [p.message for p in _problems(path, value) if p.path == _where(path)]
    return found[0] if found else ""


def _mapping_keys(path: str) -> tuple[list[str], set[str]] | None:
    """The keys allowed in the mapping at path, and the required ones; None: no mapping."""
    problems = _problems(path, {PROBE: 1})
    allowed = None
    for p in problems:
        if p.path == _where(_join(path, PROBE)) and p.message.startswith("unknown key"):
            allowed = p.message.rpartition("; allowed: ")[2].split(", ")
    if allowed is None:
        return None
    required = {
        got.group(1)
        for p in problems
        if p.path == _where(path) and (got := re.match(r"missing required key '(.+)'", p.message))
    }
    return allowed, required


def _scalar(path: str) -> tuple[str, float | None, float | None, tuple[str, ...]]:
    """(kind, low, high, choices) of the scalar at path, from the loader's complaints."""
    said = _message(path, "zz")
    if "is not a duration" in said:
        limits = re.search(r"allowed: (\d+)ms to (\d+)ms", _message(path, "99999999h"))
        assert limits, f"{path}: no range for the duration"
        return "duration", int(limits.group(1)), int(limits.group(2)), ()
    if "is not a whole number" in said:
        limits = re.search(r"allowed: (-?\d+) to (-?\d+)", _message(path, 10**30))
        assert limits, f"{path}: no range for the whole number"
        return "integer", int(limits.group(1)), int(limits.group(2)), ()
    if number := re.search(r"is not a number from (\S+) to (\S+)$", said):
        return "number", float(number.group(1)), float(number.group(2)), ()
    if "is not true or false" in said:
        return "boolean", None, None, ()
    if "is not allowed" in said:
        return "choice", None, None, tuple(said.rpartition("allowed: ")[2].split(" | "))
    if "is not an IPv4 or IPv6 address" in said:
        return "address", None, None, ()
    if said.startswith("expected a list"):
        return "list", None, None, ()
    return "text", None, None, ()


def _walk(path: str, found: list[Key]) -> None:
    got = _mapping_keys(path)
    assert got is not None, f"{path or 'the root'} is not a mapping"
    allowed, required = got
    for name in allowed:
        key = _join(path, name)
        if _mapping_keys(key) is not None:
            found.append(Key(key, "mapping", "", required=name in required))
            _walk(key, found)
        elif _mapping_keys(_join(key, "[]")) is not None:
            found.append(Key(key, "mappings", "", required=name in required))
            _walk(_join(key, "[]"), found)
        else:
            kind, low, high, choices = _scalar(key)
            shape = "scalar"
            if kind == "list":
                shape = "list"
                kind, low, high, choices = _scalar(_join(key, "[]"))
            found.append(Key(key, shape, kind, low, high, choices, name in required))


@cache
def yaml_keys() -> tuple[Key, ...]:
    found: list[Key] = []
    _walk("", found)
    return tuple(found)


def documented_keys() -> list[Key]:
    """Keys needing their own row: all but mappings and the lists that are sections."""
    return [
        k
        for k in yaml_keys()
        if k.shape != "mapping" and not (k.shape == "mappings" and f"{k.path}[]" in SECTIONS)
    ]


# --- the expected default -------------------------------------------------------------------


def _attribute_path(key: str) -> str:
    for yaml_path in sorted(RENAMES, key=len, reverse=True):
        if key == yaml_path or key.startswith((f"{yaml_path}.", f"{yaml_path}[")):
            return RENAMES[yaml_path] + key[len(yaml_path) :]
    return key


MISSING = object()


def _lookup(config: m.Config, attribute_path: str) -> object:
    value: object = config
    for seg in _segments(attribute_path):
        if value is None:
            return None
        if seg == "[]":
            assert isinstance(value, tuple)
            if not value:
                return MISSING
            value = value[0]
        else:
            value = getattr(value, seg)
    return value


def _given(node: object, prefix: str = "") -> tuple[set[str], set[str]]:
    """(scalar keys, mapping paths) present in a loaded YAML document."""
    scalars: set[str] = set()
    mappings: set[str] = set()
    if isinstance(node, dict):
        mappings.add(prefix)
        for name, value in node.items():
            sub = _given(value, _join(prefix, str(name)))
            scalars |= sub[0]
            mappings |= sub[1]
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for item in node:
            sub = _given(item, f"{prefix}[]")
            scalars |= sub[0]
            mappings |= sub[1]
    else:
        scalars.add(prefix)
    return scalars, mappings


def fmt_ms(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _plain(value: object, kind: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, m.HostPort):
        host = f"[{value.host}]" if ":" in value.host else value.host
        return f"{host}:{value.port}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_plain(v, kind) for v in value) + "]"
    if isinstance(value, int) and kind == "duration":
        return fmt_ms(value)
    if isinstance(value, int) and value == RELAY_APPLICATION:
        return "relay"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expected_default(key: Key) -> str:
    """What the Default cell must start with."""
    if key.path in OVERRIDES:
        return OVERRIDES[key.path]
    config = parse_config(MINIMAL)
    scalars, mappings = _given(yaml.safe_load(MINIMAL))
    parent = key.path.rpartition(".")[0] if "." in key.path else ""
    value = _lookup(config, _attribute_path(key.path))
    if key.required and (parent in mappings or value is MISSING):
        return "required"
    assert key.path not in scalars, (
        f"{key.path} is set in MINIMAL but not required by the loader: "
        "give its documented default in OVERRIDES"
    )
    assert value is not MISSING, f"{key.path}: MINIMAL needs an item of its list"
    return "none" if value is None else f"`{_plain(value, key.kind)}`"


def expected_range(key: Key) -> str | None:
    if key.low is None or key.high is None:
        return None
    if key.kind == "duration":
        if (key.low, key.high) == GENERIC_DURATION:
            return None
        return f"{fmt_ms(int(key.low))}-{fmt_ms(int(key.high))}"
    if key.kind == "number":
        return f"{key.low:g}-{key.high:g}"
    return f"{int(key.low)}-{int(key.high)}"


# --- reading the tables ---------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


@cache
def tables(page: str) -> dict[str, list[list[str]]]:
    """Table rows (cells) under each heading of a page, header rows left out."""
    out: dict[str, list[list[str]]] = {}
    heading, fenced = "", False
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            heading = line.lstrip("#").strip()
            out.setdefault(heading, [])
        elif not fenced and line.startswith("|") and heading:
            cells = _cells(line)
            if cells[0] != "Field" and not set(cells[0]) <= set("-: "):
                out[heading].append(cells)
    return out


def _section(path: str) -> str:
    best = ""
    for prefix in SECTIONS:
        if prefix and (path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))):
            best = max(best, prefix, key=len)
    return best


def _row_keys(cells: list[str]) -> list[str]:
    return re.findall(r"`([^`]+)`", cells[0])


def rows_of(key: Key) -> list[list[str]]:
    prefix = _section(key.path)
    page, heading = SECTIONS[prefix]
    rows = tables(page).get(heading)
    assert rows is not None, f"{page} has no heading {heading!r}"
    relative = key.path[len(prefix) :].lstrip(".")
    return [cells for cells in rows if relative in _row_keys(cells)]


# --- the tests ------------------------------------------------------------------------------


def test_the_loader_was_walked() -> None:
    paths = {k.path for k in yaml_keys()}
    for known in ("node.name", "peers[].sctp.rto.min", "routes.diameter[].peers[].weight"):
        assert known in paths, f"discovery missed {known}: did the loader's messages change?"


@pytest.mark.parametrize("key", documented_keys(), ids=lambda k: k.path)
def test_every_key_has_one_row_with_its_default(key: Key) -> None:
    rows = rows_of(key)
    page, heading = SECTIONS[_section(key.path)]
    assert rows, f"{key.path} has no row under {heading!r} in {page}"
    assert len(rows) == 1, f"{key.path} has {len(rows)} rows under {heading!r} in {page}"
    cells = rows[0]
    want = expected_default(key)
    assert len(cells) >= 3, f"{key.path}: the row needs field, default and unit/range"
    assert cells[1].startswith(want), (
        f"{key.path}: {page} says default {cells[1]!r}, the loader gives {want!r}"
    )
    text = " | ".join(cells[1:])
    wanted_range = expected_range(key)
    if wanted_range is not None:
        assert re.search(rf"(?<![\w.]){re.escape(wanted_range)}(?![\w.])", text), (
            f"{key.path}: the row should give the range {wanted_range}"
        )
    for choice in key.choices:
        assert f"`{choice}`" in text, f"{key.path}: the row does not name `{choice}`"
    if key.kind == "duration" and want.startswith("`"):
        assert "duration" in text, f"{key.path}: the row should say it is a duration"


def test_the_generic_duration_range_is_stated() -> None:
    generic = f"{fmt_ms(GENERIC_DURATION[0])}-{fmt_ms(GENERIC_DURATION[1])}"
    assert generic in (DOCS / CONFIG_MD).read_text(encoding="utf-8"), (
        f"{CONFIG_MD} should say durations may be {generic} unless a row narrows it"
    )


def test_no_row_names_a_key_the_loader_lacks() -> None:
    known = {k.path for k in yaml_keys()}
    stale = []
    for prefix, (page, heading) in SECTIONS.items():
        for cells in tables(page).get(heading, []):
            for name in _row_keys(cells):
                if "*" not in name and _join(prefix, name) not in known:
                    stale.append(f"{page} {heading}: {name}")
    assert not stale, f"rows for keys peers.yaml does not have: {stale}"


def _model_leaves(cls: type, prefix: str = "") -> list[str]:
    """Attribute paths of every field of a Config, items of tuples as []."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = _join(prefix, f.name)
        tp: object = hints[f.name]
        if isinstance(tp, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is tuple:
            tp, path = typing.get_args(tp)[0], f"{path}[]"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _model_leaves(tp, path)
        else:
            out.append(path)
    return out


def test_every_model_field_is_set_by_a_yaml_key() -> None:
    set_by_yaml = {_attribute_path(k.path) for k in yaml_keys() if k.shape in ("scalar", "list")}
    unset = [
        leaf
        for leaf in _model_leaves(m.Config)
        if not any(leaf == p or leaf.startswith((f"{p}.", f"{p}[")) for p in set_by_yaml)
    ]
    assert not unset, f"model fields no peers.yaml key sets (add it, or to RENAMES): {unset}"
