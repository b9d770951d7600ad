"""Diameter framing on a byte stream: whole messages out, whatever the segmentation."""

from __future__ import annotations

import random
import struct

import pytest

from sigmw.diameter.framing import DiameterFramer, FramingError


def message(n: int, body: int = 8, code: int = 272) -> bytes:
    """A header-valid message whose hop-by-hop id is n and whose body is `body` bytes."""
    length = 20 + body
    head = struct.pack("!I B 3s I I I", (1 << 24) | length, 0x80, code.to_bytes(3, "big"), 4, n, n)
    return head + bytes([n & 0xFF]) * body


def hbh(raw: bytes) -> int:
    return int(struct.unpack_from("!I", raw, 12)[0])


STREAM = [message(i, body=4 * (i % 7)) for i in range(50)]
WIRE = b"".join(STREAM)


@pytest.mark.parametrize("cut", range(1, 60))
def test_one_split_anywhere_gives_the_same_messages(cut: int) -> None:
    framer = DiameterFramer()
    got = framer.feed(WIRE[:cut]) + framer.feed(WIRE[cut:])
    assert got == STREAM
    assert framer.buffered == 0


def test_byte_by_byte_and_random_segments() -> None:
    framer = DiameterFramer()
    got = [m for i in range(len(WIRE)) for m in framer.feed(WIRE[i : i + 1])]
    assert got == STREAM
    rng = random.Random(7)
    framer, got, pos = DiameterFramer(), [], 0
    while pos < len(WIRE):
        step = rng.randint(1, 90)
        got += framer.feed(memoryview(WIRE)[pos : pos + step])
        pos += step
    assert got == STREAM


def test_partial_message_is_kept_until_complete() -> None:
    framer = DiameterFramer()
    whole = message(1, body=400)
    assert framer.feed(whole[:19]) == []
    assert framer.feed(whole[19:300]) == []
    assert framer.buffered == 300
    assert framer.feed(whole[300:] + whole[:3]) == [whole]
    assert framer.buffered == 3


def test_a_feed_that_is_exactly_one_message_is_returned_without_a_copy() -> None:
    whole = message(9, body=1000)
    assert DiameterFramer().feed(whole)[0] is whole


def test_many_messages_in_one_feed() -> None:
    many = [message(i) for i in range(3000)]
    got = DiameterFramer().feed(b"".join(many))
    assert len(got) == 3000
    assert [hbh(m) for m in got] == list(range(3000))


def _header(word: int) -> bytes:
    return struct.pack("!I", word) + bytes(16)


@pytest.mark.parametrize(
    ("raw", "code", "why"),
    [
        (_header((2 << 24) | 20), 5011, "version 2"),
        (_header((0 << 24) | 20), 5011, "version 0"),
        (_header((1 << 24) | 16), 5015, "below the header"),
        (_header((1 << 24) | 0), 5015, "below the header"),
        (_header((1 << 24) | 22), 5015, "not a multiple of 4"),
        (_header((1 << 24) | 65540), 5015, "above 65536"),
    ],
)
def test_each_bad_header_is_refused_with_its_result_code(raw: bytes, code: int, why: str) -> None:
    framer = DiameterFramer()
    good = message(5)
    with pytest.raises(FramingError, match=why) as caught:
        framer.feed(good + raw + b"more")
    err = caught.value
    assert err.result_code == code
    assert err.header == raw
    assert err.framed == [good]  # what came before the bad header is still delivered
    assert err.data == raw  # the header only: a bad length says nothing of the rest


def test_error_keeps_what_was_read_of_the_message_up_to_its_length() -> None:
    bad = struct.pack("!I", (2 << 24) | 28) + bytes(24)  # version 2, otherwise fine
    with pytest.raises(FramingError) as caught:
        DiameterFramer().feed(bad + message(1))
    assert caught.value.data == bad


def test_a_bad_header_split_across_feeds_is_found_once_whole() -> None:
    framer = DiameterFramer()
    raw = _header((1 << 24) | 30)
    assert framer.feed(raw[:10]) == []  # not yet a whole header: nothing to judge
    with pytest.raises(FramingError):
        framer.feed(raw[10:])


def test_max_size_is_configurable() -> None:
    big = message(1, body=200)
    assert DiameterFramer(max_size=220).feed(big) == [big]
    with pytest.raises(FramingError, match="above 216"):
        DiameterFramer(max_size=216).feed(big)
    with pytest.raises(ValueError):
        DiameterFramer(max_size=19)


def test_input_is_refused_after_an_error() -> None:
    framer = DiameterFramer()
    with pytest.raises(FramingError):
        framer.feed(_header(2 << 24 | 20))
    assert framer.error is not None and framer.error.result_code == 5011
    with pytest.raises(FramingError, match="refused") as caught:
        framer.feed(message(1))  # even a good message: the stream cannot resync
    assert caught.value.result_code == 5011
    assert framer.buffered == 0


def test_work_is_linear_in_the_bytes_fed() -> None:
    """Counted, not timed: bytes the framer moves stay within twice the input."""
    wire = b"".join(message(i, body=4 * (i % 5)) for i in range(10_000))
    one_feed = DiameterFramer()
    assert len(one_feed.feed(wire)) == 10_000
    assert one_feed.copied == 0  # sliced straight out of the input
    rng = random.Random(3)
    framer, count, pos = DiameterFramer(), 0, 0
    while pos < len(wire):
        step = rng.randint(1, 3000)
        count += len(framer.feed(wire[pos : pos + step]))
        pos += step
    assert count == 10_000
    assert framer.copied <= 2 * len(wire)
    trickle = DiameterFramer()
    big = message(1, body=60_000)
    got = [m for i in range(0, len(big), 7) for m in trickle.feed(big[i : i + 7])]
    assert got == [big]
    assert trickle.copied <= 2 * len(big)  # no re-copy of the held prefix per segment
