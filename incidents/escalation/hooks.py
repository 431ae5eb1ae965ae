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
    # A status update for an audience that offers the public status page, posted with "publish"
    # ticked: (*, update, user, now) -> None puts it on the page. It raises ValidationError keyed
    # "is_public" when it cannot, and the whole post (mail, timeline, clock) is rolled back.
    publish_public: list[Callable[..., None]] = field(default_factory=list)
    # (user) -> bool: whether the composer offers that person the public page at all.
    may_publish_public: list[Callable[[object], bool]] = field(default_factory=list)


escalation_hooks = EscalationHooks()
