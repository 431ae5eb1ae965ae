"""How the apps above take part in escalation (registered in their AppConfig.ready())."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class EscalationHooks:
    # A review or action-item reminder deadline fell due: whether it still applies, and whom it
    # goes to. (*, deadline, incident, now) -> an object with `summary`, `label` and `user`,
    # or None when nothing is owed any more. The first answer that is not None is used.
    follow_up_reminders: list[Callable[..., object | None]] = field(default_factory=list)


escalation_hooks = EscalationHooks()
