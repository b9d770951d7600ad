"""Per-association message counts kept by the endpoints: right totals, and label
values bounded whatever PPIDs and streams peers send."""

from __future__ import annotations

from sigmw.io.traffic import IN, MAX_PPIDS, OTHER, OUT, STREAM_LABELS, Traffic


def test_counts_by_direction_ppid_and_stream_and_forgets_on_take() -> None:
    t = Traffic()
    t.count(7, IN, 46, 3, 100)
    t.count(7, IN, 46, 3, 50)
    t.count(7, OUT, 46, 1, 20)
    t.count_many(8, IN, 46, 0, [b"ab", b"cde"])
    assert t.of(7) == {(IN, 46, 3): (2, 150), (OUT, 46, 1): (1, 20)}
    assert t.take(8) == {(IN, 46, 0): (2, 5)}
    assert t.of(8) == {}
    assert t.of(7) == {(IN, 46, 3): (2, 150), (OUT, 46, 1): (1, 20)}


def test_streams_above_the_label_limit_share_one_key() -> None:
    t = Traffic()
    for stream in range(STREAM_LABELS - 1, STREAM_LABELS + 100):
        t.count(1, IN, 3, stream, 10)
    got = t.of(1)
    assert got[(IN, 3, STREAM_LABELS - 1)] == (1, 10)
    assert got[(IN, 3, STREAM_LABELS)] == (100, 1000)
    assert len(got) == 2


def test_ppids_beyond_the_first_few_count_as_other() -> None:
    t = Traffic()
    for ppid in range(1000):  # a hostile peer cycling PPIDs
        t.count(1, IN, ppid, 0, 1)
    got = t.of(1)
    assert len(got) == MAX_PPIDS + 1
    assert got[(IN, OTHER, 0)] == (1000 - MAX_PPIDS, 1000 - MAX_PPIDS)
    assert sum(n for n, _ in got.values()) == 1000
    t.count(1, IN, 5, 0, 1)  # a PPID seen among the first: still its own key
    assert t.of(1)[(IN, 5, 0)] == (2, 2)
    assert t.take(1) == got | {(IN, 5, 0): (2, 2)}
    assert t.counts == {}


def test_all_associations_in_one_pass_agree_with_each_one() -> None:
    t = Traffic()
    for assoc in range(5):
        for stream in range(40):
            t.count(assoc, OUT, 46, stream, assoc + 1)
    every = t.by_association()
    assert set(every) == t.associations() == set(range(5))
    assert all(every[a] == t.of(a) for a in range(5))
