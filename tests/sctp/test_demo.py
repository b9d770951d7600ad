"""The newcomer's demo: the multihomed echo survives its path cut with nothing lost."""

from __future__ import annotations

import pytest

from sigmw.demo import run_demo
from sigmw.testbed.netns import TwoPaths

pytestmark = pytest.mark.sctp


async def test_demo_survives_the_path_cut(
    net: TwoPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_demo(net, duration=6.0) == 0
    out = capsys.readouterr().out
    assert "ADDR_UNREACHABLE" in out
    assert "ADDR_AVAILABLE" in out
    assert "lost 0, duplicates 0, in order" in out
