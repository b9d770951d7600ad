"""docs/metrics.md and sigmw/obs/catalog.py describe the same metrics.

Every catalog family has a table row in the page naming it and all its labels,
and the page names no sigmw_ series that a scrape cannot contain.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigmw.obs.catalog import FAMILIES, Family, series_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
METRIC = re.compile(r"\bsigmw_[a-z0-9_]*[a-z0-9]")
"""A metric name as written in prose, tables or PromQL (not a prefix ending in _)."""


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows whose first cell is one backquoted metric name, by that name."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        first = re.fullmatch(r"`(sigmw_[a-z0-9_]+)`", cells[0])
        if first is not None:
            assert first.group(1) not in rows, f"{first.group(1)} has two rows in {DOC.name}"
            rows[first.group(1)] = cells
    return rows


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_has_a_row_with_its_type_and_labels(family: Family) -> None:
    rows = _rows(_text())
    assert family.name in rows, f"{family.name} is not in a table of {DOC.name}"
    cells = rows[family.name]
    assert len(cells) >= 3, f"{family.name}: the row needs metric, type and labels"
    assert cells[1] == family.kind.value, f"{family.name}: type {cells[1]!r}"
    documented = set(re.findall(r"`([a-z_]+)`", cells[2]))
    assert documented == set(family.labels), (
        f"{family.name}: labels column says {sorted(documented)}, "
        f"the catalog {sorted(family.labels)}"
    )


def test_no_row_for_a_metric_the_catalog_lacks() -> None:
    extra = set(_rows(_text())) - {f.name for f in FAMILIES}
    assert not extra, f"{DOC.name} has rows for metrics not in the catalog: {sorted(extra)}"


def test_every_name_in_the_page_is_exported() -> None:
    known = series_names() | {f.name for f in FAMILIES}
    unknown = sorted(set(METRIC.findall(_text())) - known)
    assert not unknown, f"{DOC.name} names metrics sigmw does not export: {unknown}"
