"""Readers for the Diameter parts of peers.yaml: node.diameter and routes.diameter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from sigmw.config import diameter as d
from sigmw.config.yamlread import Reader, Spec, read_fields

U32 = 2**32 - 1


def _app_id(r: Reader) -> Callable[[yaml.Node, str], int | None]:
    """An application id; 'relay' stands for 0xffffffff."""

    def read(node: yaml.Node, path: str) -> int | None:
        if isinstance(node, yaml.ScalarNode) and node.value == "relay":
            return d.RELAY_APPLICATION
        return r.integer(node, path, 0, U32)

    return read


def _ids(r: Reader, read: Callable[[yaml.Node, str], int | None]) -> Callable[..., Any]:
    def many(node: yaml.Node, path: str) -> tuple[int, ...] | None:
        got = r.list_of(node, path, read)
        return None if got is None else tuple(got)

    return many


def node_diameter(r: Reader) -> Callable[[yaml.Node, str], d.DiameterNode | None]:
    u32 = lambda n, p: r.integer(n, p, 0, U32)  # noqa: E731
    vendor_app: Spec = {"vendor": u32, "auth": _app_id(r), "acct": _app_id(r)}

    def one_vendor_app(node: yaml.Node, path: str) -> d.VendorApplication | None:
        got = read_fields(r, node, path, vendor_app, required=("vendor",))
        if got is not None and ("auth" in got) == ("acct" in got):
            r.error(node, path, "give exactly one of auth or acct")
            return None
        return None if got is None else d.VendorApplication(**got)

    spec: Spec = {
        "origin_host": r.text,
        "origin_realm": r.text,
        "vendor_id": u32,
        "product_name": r.text,
        "auth_applications": _ids(r, _app_id(r)),
        "acct_applications": _ids(r, _app_id(r)),
        "vendor_applications": lambda n, p: _tuple(r.list_of(n, p, one_vendor_app)),
        "supported_vendors": _ids(r, u32),
        "watchdog": lambda n, p: r.duration(n, p, 1000, 3_600_000),
        "capabilities_timeout": lambda n, p: r.duration(n, p, 100, 600_000),
        "request_timeout": lambda n, p: r.duration(n, p, 100, 600_000),
        "max_pending": lambda n, p: r.integer(n, p, 1, 1_000_000),
        "redirect": lambda n, p: r.choice(n, p, d.RedirectPolicy),
        "max_message_size": lambda n, p: r.integer(n, p, 4096, 2**24 - 1),
    }

    def read(node: yaml.Node, path: str) -> d.DiameterNode | None:
        got = read_fields(r, node, path, spec, required=("origin_host", "origin_realm"))
        if got is None:
            return None
        host, realm = got.pop("origin_host"), got.pop("origin_realm")
        return d.DiameterNode(host, realm, **got)

    return read


def _tuple(items: list[Any] | None) -> tuple[Any, ...] | None:
    return None if items is None else tuple(items)


def _target(r: Reader, index: int) -> Callable[[yaml.Node, str], d.RouteTarget | None]:
    """A peer name (priority = its place in the list) or {peer, priority, weight}."""
    spec: Spec = {
        "peer": r.text,
        "priority": lambda n, p: r.integer(n, p, 1, 1000),
        "weight": lambda n, p: r.integer(n, p, 1, 1000),
    }

    def read(node: yaml.Node, path: str) -> d.RouteTarget | None:
        if isinstance(node, yaml.ScalarNode):
            name = r.text(node, path)
            return None if name is None else d.RouteTarget(name, priority=index + 1)
        got = read_fields(r, node, path, spec, required=("peer",))
        return None if got is None else d.RouteTarget(**got)

    return read


def diameter_routes(r: Reader, node: yaml.Node, path: str) -> list[d.DiameterRoute] | None:
    out = []
    for i, item in enumerate(r.sequence(node, path)):
        where = f"{path}[{i}]"

        def targets(n: yaml.Node, p: str) -> tuple[d.RouteTarget, ...] | None:
            found = [_target(r, j)(x, f"{p}[{j}]") for j, x in enumerate(r.sequence(n, p))]
            if not found:
                r.error(n, p, "needs at least one peer")
            return tuple(t for t in found if t is not None) if all(found) and found else None

        got = read_fields(
            r,
            item,
            where,
            {
                "realm": r.text,
                "application": _app_id(r),
                "origin_realm": r.text,
                "peers": targets,
            },
            required=("realm", "peers"),
        )
        if got is not None:
            out.append(d.DiameterRoute(got.pop("realm"), to=got.pop("peers"), **got))
    return None if r.problems else out
