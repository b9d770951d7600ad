"""The Diameter part of peers.yaml: this node's Diameter settings and the realm
routing table. Pure data with defaults; docs/diameter.md documents every field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

RELAY_APPLICATION = 0xFFFFFFFF
ANY = "*"


class RedirectPolicy(StrEnum):
    PASS = "pass"
    """Relay a 3006 redirect answer to the client unchanged."""
    FOLLOW = "follow"
    """Re-send the request to a connected peer named by Redirect-Host, if any."""


@dataclass(frozen=True, slots=True)
class VendorApplication:
    """One Vendor-Specific-Application-Id advertised in CER/CEA."""

    vendor: int
    auth: int | None = None
    acct: int | None = None


@dataclass(frozen=True, slots=True)
class DiameterNode:
    """node.diameter: identity, capabilities and relay timers (milliseconds)."""

    host: str
    """Origin-Host of this node."""
    realm: str
    """Origin-Realm of this node."""
    vendor_id: int = 0
    product_name: str = "sigmw"
    auth_applications: tuple[int, ...] = (RELAY_APPLICATION,)
    acct_applications: tuple[int, ...] = ()
    vendor_applications: tuple[VendorApplication, ...] = ()
    supported_vendors: tuple[int, ...] = ()
    watchdog: int = 30000
    """Tw (RFC 3539): DWR after this much silence; jittered by up to 2 s (or Tw/4)."""
    capabilities_timeout: int = 10000
    """How long to wait for a CER (accepted) or CEA (connected) before giving up."""
    request_timeout: int = 10000
    """Tx: a relayed request unanswered this long is re-sent once, then answered 3002."""
    max_pending: int = 4096
    """Requests in flight to one peer; above it the peer gets no new work (3004 if none can)."""
    redirect: RedirectPolicy = RedirectPolicy.PASS
    max_message_size: int = 65536
    """Larger messages are refused (5015 over TCP, where the stream cannot be resynced)."""


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """One peer of a route: lower priority is preferred; equal priorities share by weight."""

    peer: str
    priority: int = 1
    weight: int = 1


@dataclass(frozen=True, slots=True)
class DiameterRoute:
    """routes.diameter[]: which peers serve a Destination-Realm (and application)."""

    realm: str
    """Destination-Realm, matched case-insensitively; '*' matches every realm."""
    to: tuple[RouteTarget, ...]
    application: int | None = None
    """Application-Id of the header; None matches every application."""
    origin_realm: str | None = None
    """Origin-Realm of the request; None matches every origin."""
