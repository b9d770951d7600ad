"""The C speedups (sigmw/diameter/_speedups.c) against the Python reference they replace:
same result for every well-formed input, and for every malformed one the C code gives up so
the reference names the error. Inputs are generated: valid messages, then the same bytes
corrupted, cut and re-split."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sigmw.diameter import _speedups, framing, wire
from sigmw.diameter.framing import DiameterFramer, FramingError

# The AVPs scan reads, some it skips, and the Experimental-Result pair result_code reads.
U24, U32 = st.integers(0, 2**24 - 1), st.integers(0, 2**32 - 1)
CODES = [263, 264, 268, 282, 283, 284, 292, 293, 296, 297, 298, 258, 415, 416, 1, 999]


_speedups.register(wire.Header, wire.Scanned)  # as wire does, also under SIGMW_NO_SPEEDUPS=1


def test_the_speedups_are_built_and_in_use() -> None:
    """Installed with a C compiler (as CI and the container do), the relay uses them."""
    assert wire.c_speedups is _speedups
    assert framing._c is _speedups


def _avp(code: int, value: bytes, flags: int, vendor: int | None) -> bytes:
    if vendor is None:
        head = struct.pack(">II", code, ((flags & 0x7F) << 24) | (8 + len(value)))
    else:
        head = struct.pack(">III", code, ((flags | 0x80) << 24) | (12 + len(value)), vendor)
    return head + value + b"\0" * (-len(value) % 4)


avp = st.builds(
    _avp,
    st.sampled_from(CODES),
    st.one_of(
        st.binary(max_size=12), st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big"))
    ),
    st.sampled_from([0x40, 0x00, 0x60]),
    st.one_of(st.none(), st.sampled_from([0, 10415])),
)
grouped = st.lists(avp, max_size=3).map(lambda inner: _avp(297, b"".join(inner), 0x40, None))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(st.one_of(avp, grouped), max_size=8)))
    flags = draw(st.sampled_from([0x80, 0xC0, 0x40, 0x20, 0xA0, 0x81, 0xD0]))
    code, app, hbh, e2e = draw(
        st.tuples(*[st.integers(0, 2**24 - 1)] * 2, *[st.integers(0, 2**32 - 1)] * 2)
    )
    length = 20 + len(body)
    return struct.pack(">IIIII", (1 << 24) | length, (flags << 24) | code, app, hbh, e2e) + body


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid message with a few bytes overwritten, or cut short, or grown."""
    data = bytearray(draw(messages()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data[:cut]) + draw(st.binary(max_size=4))


def _reference_scan(data: bytes) -> wire.Scanned | None:
    try:
        return wire.scan_py(data)
    except wire.DiameterError:
        return None


@settings(max_examples=600)
@given(st.one_of(messages(), damaged()))
def test_scan_matches_the_reference(data: bytes) -> None:
    expected = _reference_scan(data)
    got = _speedups.scan(data)
    assert got == expected
    if got is not None:
        assert type(got) is wire.Scanned and type(got.header) is wire.Header
        assert got.header.is_request == bool(data[4] & 0x80)


@settings(max_examples=600)
@given(st.one_of(messages(), damaged()))
def test_result_code_matches_the_reference(data: bytes) -> None:
    assert _speedups.result_code(data) == wire.result_code_py(data)


def test_scan_finds_every_field_the_relay_reads() -> None:
    """One message carrying each AVP scan keeps (not left to chance in the generator)."""
    proxy = _avp(284, _avp(280, b"h", 0x40, None) + _avp(33, b"st", 0x40, None), 0x40, None)
    body = b"".join(
        (
            _avp(263, b"s;1", 0x40, None),
            _avp(283, b"realm", 0x40, None),
            _avp(293, b"host", 0x40, None),
            _avp(264, b"ohost", 0x40, None),
            _avp(296, b"orealm", 0x40, None),
            _avp(282, b"rr1", 0x40, None),
            _avp(282, b"rr2", 0x40, None),
            _avp(268, (3006).to_bytes(4, "big"), 0x40, None),
            proxy,
            _avp(292, b"aaa://x", 0x40, None),
            _avp(263, b"vendor-specific, skipped", 0x40, 10415),
        )
    )
    data = struct.pack(">IIIII", (1 << 24) | (20 + len(body)), (0x60 << 24) | 272, 4, 5, 6) + body
    got = wire.scan(data)
    assert got == wire.scan_py(data)
    assert got.session_id == b"s;1" and got.destination_host == b"host"
    assert got.route_records == (b"rr1", b"rr2") and got.proxy_infos == (proxy,)
    assert got.result_code == 3006 and got.redirect_hosts == (b"aaa://x",)


def test_a_malformed_message_still_gets_the_references_error() -> None:
    body = _avp(263, b"s;1", 0x40, None)
    bad = struct.pack(">IIIII", (1 << 24) | (20 + len(body)), (0x80 << 24) | 272, 4, 5, 6)
    bad += body[:4] + (99).to_bytes(4, "big") + body[8:]  # the AVP claims 99 bytes
    assert _speedups.scan(bad) is None
    try:
        wire.scan(bad)
    except wire.DiameterError as exc:
        assert exc.result_code == 5014 and exc.failed_avp
    else:
        raise AssertionError("scan accepted an AVP running past the end")


def _frame_all(framer: DiameterFramer, chunks: list[bytes]) -> tuple[list[bytes], int | None]:
    out: list[bytes] = []
    for chunk in chunks:
        try:
            out += framer.feed(chunk)
        except FramingError as exc:
            return out + exc.framed + [exc.data], exc.result_code
    return out, None


@settings(max_examples=300)
@given(
    st.lists(st.one_of(messages(), damaged()), max_size=6),
    st.lists(st.integers(1, 64), max_size=8),
    st.integers(20, 200),
)
def test_split_matches_the_reference(msgs: list[bytes], cuts: list[int], max_size: int) -> None:
    """The same byte stream, cut the same way, frames the same with either _split."""
    stream = b"".join(msgs)
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(stream[pos : pos + n])
        pos += n
    chunks.append(stream[pos:])
    reference = DiameterFramer(max_size)
    reference._split = reference._split_py  # type: ignore[method-assign]
    assert _frame_all(DiameterFramer(max_size), chunks) == _frame_all(reference, chunks)


@settings(max_examples=400)
@given(st.one_of(messages(), damaged()).filter(lambda d: len(d) >= 20), st.binary(max_size=40))
def test_busy_answer_matches_the_reference(request: bytes, tail: bytes) -> None:
    got = _speedups.busy_answer(request, tail)
    assert got == wire.busy_answer_py(request, tail)
    assert got[4] & 0xA0 == 0x20  # an answer (R clear) with the E bit
