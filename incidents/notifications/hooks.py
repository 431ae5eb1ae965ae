"""How the apps above take part in delivery (registered in their AppConfig.ready())."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class NotificationHooks:
    # Who is paged for a drill incident instead of `intended` (the drill's participants):
    # (*, incident, intended, reminder) -> list of users. One answer; without it, `intended`.
    drill_recipients: Callable[..., list] | None = None
    # Every page that could reach the person of an escalation event failed for good:
    # (*, event, now). The escalation app moves its chain on to whoever comes next.
    page_failed: list[Callable[..., None]] = field(default_factory=list)
    # A webhook row an app above queued for its own subscribers: (notification) -> (body bytes,
    # headers) to post as they are (a signed body), or None for the usual incident payload. It
    # may raise PermanentFailure (an address that is no longer allowed).
    webhook_request: list[Callable[..., tuple[bytes, dict[str, str]] | None]] = field(default_factory=list)
    # Extra headers for an email row (List-Unsubscribe): (notification) -> dict.
    email_headers: list[Callable[..., dict[str, str]]] = field(default_factory=list)
    # A paged person answered "ESC" (escalate now): (*, incident, user, via, now) -> str saying
    # who is paged next, or raises acks.ReplyRefused. The escalation app fires its next step.
    escalate_now: Callable[..., str] | None = None


notification_hooks = NotificationHooks()
