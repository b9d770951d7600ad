"""Failure detection bounds implied by the SCTP timers."""

from __future__ import annotations

import dataclasses

import pytest

from sigmw.sctp.timing import (
    FAST_FAILOVER,
    LINUX_DEFAULTS,
    Timers,
    association_failure_ms,
    path_failure_detection_ms,
    path_switch_ms,
    pf_effective,
)


def test_pf_threshold_without_room_below_path_max_retrans_has_no_effect() -> None:
    # Linux enters PF only while pf < errors < path_max_retrans (measured on 6.1).
    useless = dataclasses.replace(BENCH, pf_threshold=1)
    assert not pf_effective(useless)
    assert path_switch_ms(useless) == path_failure_detection_ms(useless)


BENCH = FAST_FAILOVER  # the demo and bench preset


def test_busy_path_detection_counts_rto_max_per_error() -> None:
    # pmr 2: unreachable after 3 timeouts, plus one for a timer started before the cut.
    assert path_failure_detection_ms(BENCH) == 4 * 500


def test_idle_path_detection_counts_heartbeat_periods() -> None:
    assert path_failure_detection_ms(BENCH, busy=False) == 4 * (200 + 500 + 250)


def test_pf_threshold_switches_traffic_sooner() -> None:
    assert pf_effective(BENCH)
    assert path_switch_ms(BENCH) == 2 * 500
    no_pf = dataclasses.replace(BENCH, pf_threshold=None)
    assert path_switch_ms(no_pf) == path_failure_detection_ms(no_pf) == 2000


def test_linux_defaults_are_slow_for_signaling() -> None:
    # The reason sigmw tunes every peer: defaults take minutes to notice a dead path.
    assert path_failure_detection_ms(LINUX_DEFAULTS) == 7 * 60000
    assert association_failure_ms(LINUX_DEFAULTS) == 12 * 60000


def test_idle_detection_needs_heartbeats() -> None:
    off = Timers(200, 100, 500, 200, False, 2, 6)
    with pytest.raises(ValueError, match="heartbeats disabled"):
        path_failure_detection_ms(off, busy=False)


def test_tuning_differences_name_what_the_kernel_changed() -> None:
    from sigmw.sctp.options import SctpTuning, tuning_differences

    wanted = SctpTuning(rto_min_ms=250, hb_interval_ms=200, sack_delay_ms=None)
    got = SctpTuning(rto_min_ms=252, hb_interval_ms=200, sack_delay_ms=200)
    assert tuning_differences(wanted, got) == [("rto_min_ms", 250, 252)]
