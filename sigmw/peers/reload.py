"""What a configuration reload touches: only peers that were added, removed or changed."""

from __future__ import annotations

from dataclasses import dataclass

from sigmw.config.model import Config, Peer


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    added: tuple[Peer, ...]
    removed: tuple[str, ...]
    changed: tuple[Peer, ...]
    """Same name, different settings: the association is rebuilt with the new ones."""
    unchanged: tuple[str, ...]
    """Left alone: traffic on them continues untouched."""


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    before = {p.name: p for p in old.peers}
    after = {p.name: p for p in new.peers}
    return ReloadPlan(
        added=tuple(p for name, p in after.items() if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(p for name, p in after.items() if name in before and before[name] != p),
        unchanged=tuple(name for name, p in after.items() if before.get(name) == p),
    )
