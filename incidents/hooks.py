"""How the apps above the core take part in its work, without the core importing them.

Each downstream app registers in its `AppConfig.ready()`; the core calls whatever is registered,
in INSTALLED_APPS order (escalation before reports, so an incident's deadlines are armed before
its report is rendered). An app that is not installed simply takes no part.

    # reports/apps.py
    def ready(self) -> None:
        from incidents.hooks import hooks
        from . import selectors, services

        hooks.close_guards.append(selectors.incident_has_approved_review)
        hooks.after_transition.append(services.report_on_incident_transition)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Hooks:
    # At open, before the incident is saved: each returns part of the policy frozen on it.
    snapshot_parts: list[Callable[[], dict[str, Any]]] = field(default_factory=list)
    # After the incident is saved and its opening is on the timeline: (*, incident, now).
    after_open: list[Callable[..., None]] = field(default_factory=list)
    # After a lifecycle transition is saved and recorded: (*, incident, name, now).
    after_transition: list[Callable[..., None]] = field(default_factory=list)
    # After severity, financial impact, category, affected systems or start time changed: (*, incident).
    after_reclassify: list[Callable[..., None]] = field(default_factory=list)
    # The "closed" transition's guard: each gets (*, incident) and must answer True.
    close_guards: list[Callable[..., bool]] = field(default_factory=list)
    # Why `user` may not command now, as sentences (empty: they may): (*, user, at).
    commander_problems: list[Callable[..., list[str]]] = field(default_factory=list)
    # Refuse a commander by raising CommanderRefused: (*, user, incident).
    commander_guards: list[Callable[..., None]] = field(default_factory=list)
    # When the incident must be acknowledged: (incident, *, holidays) -> datetime | None. One
    # answer (the escalation policy frozen at open); without it the clock has no target.
    response_due_at: Callable[..., datetime | None] | None = None
    # When the post-incident review was done: (incident) -> datetime | None. One answer (the
    # reports app: its approval since the resolution); without it, closing is the review's end.
    review_done_at: Callable[..., datetime | None] | None = None
    # After someone took, was given or left an incident role, commander included:
    # (*, incident, role, holder, previous, by, now); holder None when the role was left empty.
    after_role_change: list[Callable[..., None]] = field(default_factory=list)
    # After a timeline entry is written, inside its transaction: (*, entry). Every change to an
    # incident is on its timeline, so this is where a page showing it goes stale.
    after_record: list[Callable[..., None]] = field(default_factory=list)
    # Extra context for the incident page: (incident) -> dict.
    incident_page_context: list[Callable[..., dict[str, Any]]] = field(default_factory=list)


hooks = Hooks()
