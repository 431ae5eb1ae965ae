"""The escalation policy frozen on an incident when it opens, as typed values.

Stored as JSON on the incident (`Incident.escalation_snapshot`) so that an admin's edit does not
rewrite an escalation in flight; read back only through `EscalationSnapshot.from_json`, which is
where every default lives (an incident opened before a field existed reads the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from decimal import Decimal
from typing import Any

# Used when no default escalation policy exists (and for incidents frozen without the field).
DEFAULT_STATUS_ESCALATE_AFTER_S = 900
DEFAULT_EMAIL_FOLLOW_UP_S = 60


@dataclass(frozen=True)
class ChainStep:
    """One step of the acknowledgement chain: whom to page, and how long after the previous."""

    delay_s: float
    target: str  # EscalationStep.Target
    role: str  # the role group's name


@dataclass(frozen=True)
class SeverityPolicy:
    """What a severity level asked for when the incident opened."""

    label: str = ""
    major: bool = False
    response_s: float | None = None
    next_business_day: bool = False
    status_interval_s: float | None = None

    @property
    def status_interval(self) -> timedelta | None:
        return timedelta(seconds=self.status_interval_s) if self.status_interval_s else None


@dataclass(frozen=True)
class Trigger:
    """A role escalation rule (page the CTO for a Sev1, the Head of Risk above $5,000, ...)."""

    key: str
    name: str
    role: str
    condition: str  # EscalationTrigger.Condition
    severity_level: int | None = None
    open_for_s: float | None = None
    amount_usd: str | None = None  # a decimal, kept as text so the JSON is exact

    @property
    def amount(self) -> Decimal | None:
        return None if self.amount_usd is None else Decimal(self.amount_usd)

    @property
    def rule(self) -> str:
        return f"role:{self.key}"


@dataclass(frozen=True)
class EscalationSnapshot:
    policy: str = ""
    chain: tuple[ChainStep, ...] = ()
    status_escalate_after_s: float = DEFAULT_STATUS_ESCALATE_AFTER_S
    email_follow_up_s: float = DEFAULT_EMAIL_FOLLOW_UP_S
    outage_after_s: float | None = None
    severities: Mapping[str, SeverityPolicy] = field(default_factory=dict)
    triggers: tuple[Trigger, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> EscalationSnapshot:
        data = data or {}
        defaults = cls()
        return cls(
            policy=data.get("policy") or defaults.policy,
            chain=tuple(_make(ChainStep, step) for step in data.get("chain") or ()),
            status_escalate_after_s=_or(data.get("status_escalate_after_s"), defaults.status_escalate_after_s),
            email_follow_up_s=_or(data.get("email_follow_up_s"), defaults.email_follow_up_s),
            outage_after_s=data.get("outage_after_s"),
            severities={
                level: _make(SeverityPolicy, policy) for level, policy in (data.get("severities") or {}).items()
            },
            triggers=tuple(_make(Trigger, trigger) for trigger in data.get("triggers") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, whose deep copy cost 0.4 ms of every open.
        return {
            "policy": self.policy,
            "chain": [dict(vars(step)) for step in self.chain],
            "status_escalate_after_s": self.status_escalate_after_s,
            "email_follow_up_s": self.email_follow_up_s,
            "outage_after_s": self.outage_after_s,
            "severities": {level: dict(vars(policy)) for level, policy in self.severities.items()},
            "triggers": [dict(vars(trigger)) for trigger in self.triggers],
        }

    @property
    def status_escalate_after(self) -> timedelta:
        return timedelta(seconds=self.status_escalate_after_s)

    @property
    def email_follow_up(self) -> timedelta:
        return timedelta(seconds=self.email_follow_up_s)

    def trigger(self, key: str) -> Trigger | None:
        return next((trigger for trigger in self.triggers if trigger.key == key), None)


def _make(kind, data: Mapping[str, Any]):
    # Keys a later version added are ignored by an older reader, and the other way round.
    known = {f.name for f in fields(kind)}
    return kind(**{key: value for key, value in data.items() if key in known})


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def snapshot_of(incident) -> EscalationSnapshot:
    """The incident's frozen policy, parsed once per loaded incident (the arming and firing code
    reads it several times in one go)."""
    raw = incident.escalation_snapshot
    cached = getattr(incident, "_escalation_snapshot_typed", None)
    if cached is not None and cached[0] is raw:
        return cached[1]
    typed = EscalationSnapshot.from_json(raw)
    incident._escalation_snapshot_typed = (raw, typed)
    return typed
