"""Messages sigmw originates: CER/CEA, DWR/DWA, DPR/DPA (built with python-diameter),
error answers (built on the bytes), and decoding of a peer's CER/CEA.

python-diameter owns the dictionary and encoding of the base-protocol messages,
which are rare. Error answers are built by hand on the bytes instead: under
overload every excess request gets a 3004, and python-diameter's encoder costs
~100 us a message, which would turn shedding load into a new overload.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from diameter.message import Message as PdMessage
from diameter.message.avp import Avp as PdAvp
from diameter.message.avp.grouped import FailedAvp, VendorSpecificApplicationId
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
)

from sigmw.diameter import wire
from sigmw.diameter.codes import (
    AVP_MANDATORY,
    FLAG_ERROR,
    FLAG_PROXIABLE,
    PROTOCOL_ERRORS,
    RELAY_APPLICATION,
    Avp,
    DisconnectCause,
)


@dataclass(frozen=True, slots=True)
class VendorApp:
    """One Vendor-Specific-Application-Id: a vendor and its auth or acct application."""

    vendor_id: int
    """Vendor-Id inside the group."""
    auth_app: int | None = None
    """Auth-Application-Id, or None."""
    acct_app: int | None = None
    """Acct-Application-Id, or None."""


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """What sigmw says about itself in CER/CEA and in every message it originates."""

    origin_host: bytes
    """DiameterIdentity of this node."""
    origin_realm: bytes
    """Realm of this node."""
    origin_state_id: int
    """Changes at every start (RFC 6733 8.16): peers learn of a restart."""
    vendor_id: int = 0
    """Vendor-Id: 0 (IETF) as sigmw has no enterprise number of its own."""
    product_name: str = "sigmw"
    """Product-Name."""
    firmware_revision: int = 1
    """Firmware-Revision (the release's minor number)."""
    auth_apps: tuple[int, ...] = (0xFFFFFFFF,)
    """Auth-Application-Ids advertised: the relay application by default."""
    acct_apps: tuple[int, ...] = ()
    """Acct-Application-Ids advertised."""
    vendor_apps: tuple[VendorApp, ...] = ()
    """Vendor-Specific-Application-Ids advertised."""
    supported_vendors: tuple[int, ...] = ()
    """Supported-Vendor-Ids advertised."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A peer's CER or CEA, decoded."""

    origin_host: bytes
    origin_realm: bytes
    host_ips: tuple[str, ...]
    auth_apps: frozenset[int]
    acct_apps: frozenset[int]
    vendor_apps: tuple[VendorApp, ...]
    supported_vendors: frozenset[int]
    origin_state_id: int | None
    product_name: str
    result_code: int | None
    """CEA only."""

    def applications(self) -> frozenset[int]:
        """Every application id the peer advertised, vendor-specific ones included."""
        ids = set(self.auth_apps) | set(self.acct_apps)
        for v in self.vendor_apps:
            ids.update(x for x in (v.auth_app, v.acct_app) if x is not None)
        return frozenset(ids)


def _fill_capabilities(msg: Any, me: LocalIdentity, host_ips: list[str]) -> None:
    msg.origin_host = me.origin_host
    msg.origin_realm = me.origin_realm
    msg.host_ip_address = host_ips
    msg.vendor_id = me.vendor_id
    msg.product_name = me.product_name
    msg.origin_state_id = me.origin_state_id
    msg.supported_vendor_id = list(me.supported_vendors)
    msg.auth_application_id = list(me.auth_apps)
    msg.acct_application_id = list(me.acct_apps)
    msg.vendor_specific_application_id = [
        VendorSpecificApplicationId(v.vendor_id, v.auth_app, v.acct_app) for v in me.vendor_apps
    ]
    msg.firmware_revision = me.firmware_revision


def _ids(msg: Any, hop_by_hop: int, end_to_end: int) -> None:
    msg.header.hop_by_hop_identifier = hop_by_hop
    msg.header.end_to_end_identifier = end_to_end


def cer(me: LocalIdentity, host_ips: list[str], hop_by_hop: int, end_to_end: int) -> bytes:
    """CER with one Host-IP-Address per local address of the association."""
    msg = CapabilitiesExchangeRequest()
    _ids(msg, hop_by_hop, end_to_end)
    _fill_capabilities(msg, me, host_ips)
    return bytes(msg.as_bytes())


def cea(
    me: LocalIdentity,
    request: wire.Header,
    result_code: int,
    host_ips: list[str],
    error_message: str | None = None,
    failed_avp: bytes = b"",
) -> bytes:
    """CEA; a 3xxx result carries the E bit, any failure its Error-Message and Failed-AVP."""
    msg = CapabilitiesExchangeAnswer()
    _ids(msg, request.hop_by_hop, request.end_to_end)
    msg.result_code = result_code
    _fill_capabilities(msg, me, host_ips)
    _add_error_details(msg, result_code, error_message, failed_avp)
    return bytes(msg.as_bytes())


def _add_error_details(
    msg: Any, result_code: int, error_message: str | None, failed_avp: bytes
) -> None:
    if result_code in PROTOCOL_ERRORS:
        msg.header.is_error = True
    if error_message:
        msg.error_message = error_message
    if failed_avp:
        msg.failed_avp = FailedAvp(additional_avps=_decode_avps(failed_avp))


def _decode_avps(raw: bytes) -> list[Any]:
    """Whole AVPs as python-diameter objects; a header-only one (bad length) kept raw."""
    try:
        return [PdAvp.from_bytes(raw)]
    except Exception:  # the offending AVP may not decode: send its header as given
        return [PdAvp(int.from_bytes(raw[:4], "big"), raw[4] & ~0x80, 0, raw[8:])]


def dwr(me: LocalIdentity, hop_by_hop: int, end_to_end: int) -> bytes:
    msg = DeviceWatchdogRequest()
    _ids(msg, hop_by_hop, end_to_end)
    msg.origin_host = me.origin_host
    msg.origin_realm = me.origin_realm
    msg.origin_state_id = me.origin_state_id
    return bytes(msg.as_bytes())


def dwa(me: LocalIdentity, request: wire.Header, result_code: int = 2001) -> bytes:
    msg = DeviceWatchdogAnswer()
    _ids(msg, request.hop_by_hop, request.end_to_end)
    msg.result_code = result_code
    msg.origin_host = me.origin_host
    msg.origin_realm = me.origin_realm
    msg.origin_state_id = me.origin_state_id
    return bytes(msg.as_bytes())


def dpr(me: LocalIdentity, cause: DisconnectCause, hop_by_hop: int, end_to_end: int) -> bytes:
    msg = DisconnectPeerRequest()
    _ids(msg, hop_by_hop, end_to_end)
    msg.origin_host = me.origin_host
    msg.origin_realm = me.origin_realm
    msg.disconnect_cause = int(cause)
    return bytes(msg.as_bytes())


def dpa(me: LocalIdentity, request: wire.Header, result_code: int = 2001) -> bytes:
    msg = DisconnectPeerAnswer()
    _ids(msg, request.hop_by_hop, request.end_to_end)
    msg.result_code = result_code
    msg.origin_host = me.origin_host
    msg.origin_realm = me.origin_realm
    return bytes(msg.as_bytes())


def disconnect_cause(data: bytes) -> int | None:
    """The Disconnect-Cause of a DPR, None if absent or malformed."""
    msg = PdMessage.from_bytes(data)
    value = getattr(msg, "disconnect_cause", None)
    return value if isinstance(value, int) else None


def error_answer(
    me: LocalIdentity,
    request: wire.Scanned,
    result_code: int,
    error_message: str = "",
    failed_avp: bytes = b"",
) -> bytes:
    """An answer generated by this node to a request it will not (or cannot) serve.

    Built on the bytes (see the module note). Session-Id first, as RFC 6733 8.8
    asks; Error-Reporting-Host names this node; Proxy-Info is copied untouched
    (RFC 6733 6.2); 3xxx results carry the E bit.
    """
    hdr = request.header
    flags = hdr.flags & FLAG_PROXIABLE
    if result_code in PROTOCOL_ERRORS:
        flags |= FLAG_ERROR
    out = wire.answer_header(hdr, flags)
    if request.session_id is not None:
        out += wire.encode_avp(Avp.SESSION_ID, request.session_id)
    out += wire.encode_avp(Avp.ORIGIN_HOST, me.origin_host)
    out += wire.encode_avp(Avp.ORIGIN_REALM, me.origin_realm)
    out += wire.encode_u32_avp(Avp.RESULT_CODE, result_code)
    if result_code != 2001:
        out += wire.encode_avp(Avp.ERROR_REPORTING_HOST, me.origin_host, flags=0)  # no M: 7.4
    if error_message:
        out += wire.encode_avp(Avp.ERROR_MESSAGE, error_message.encode(), flags=0)
    if failed_avp:
        out += wire.encode_avp(Avp.FAILED_AVP, failed_avp, AVP_MANDATORY)
    for info in request.proxy_infos:
        out += info
    wire.set_length(out)
    return bytes(out)


def capabilities(data: bytes) -> Capabilities:
    """Decode a CER or CEA; raises DiameterError 5005 when Origin-Host/Realm are missing."""
    msg = PdMessage.from_bytes(data)
    host = getattr(msg, "origin_host", None)
    realm = getattr(msg, "origin_realm", None)
    if not host or not realm:
        missing = Avp.ORIGIN_HOST if not host else Avp.ORIGIN_REALM
        raise wire.DiameterError(5005, f"{missing.name} missing", wire.encode_avp(missing, b""))
    vendor_apps = tuple(
        VendorApp(v.vendor_id, v.auth_application_id, v.acct_application_id)
        for v in getattr(msg, "vendor_specific_application_id", None) or []
    )
    return Capabilities(
        origin_host=bytes(host),
        origin_realm=bytes(realm),
        host_ips=tuple(_ip_text(a) for a in getattr(msg, "host_ip_address", None) or []),
        auth_apps=frozenset(getattr(msg, "auth_application_id", None) or []),
        acct_apps=frozenset(getattr(msg, "acct_application_id", None) or []),
        vendor_apps=vendor_apps,
        supported_vendors=frozenset(getattr(msg, "supported_vendor_id", None) or []),
        origin_state_id=getattr(msg, "origin_state_id", None),
        product_name=str(getattr(msg, "product_name", None) or ""),
        result_code=getattr(msg, "result_code", None),
    )


def common_applications(me: LocalIdentity, caps: Capabilities) -> bool:
    """Whether a CER/CEA leaves an application to talk about (else 5010). A relay
    (0xffffffff) on either side serves every application; otherwise the sets meet."""
    theirs = caps.applications()
    if not theirs:
        return False
    ours = set(me.auth_apps) | set(me.acct_apps)
    ours |= {a for v in me.vendor_apps for a in (v.auth_app, v.acct_app) if a is not None}
    return RELAY_APPLICATION in ours or RELAY_APPLICATION in theirs or bool(ours & theirs)


def _ip_text(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 2:  # python-diameter: (family, text)
        return str(value[1])
    if isinstance(value, bytes | bytearray) and len(value) in (4, 16):
        return str(ipaddress.ip_address(bytes(value)))
    return str(value)


def render(data: bytes) -> str:
    """A message for logs and debug output, decoded with python-diameter's dictionary."""
    try:
        msg = PdMessage.from_bytes(data)
        return "\n".join([str(msg), *(f"  {avp}" for avp in msg.avps)])
    except Exception as exc:  # a log line must never fail on bad input
        return f"<undecodable Diameter message, {len(data)} bytes: {exc}>"
