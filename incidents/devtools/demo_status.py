"""The demo's status page and regulatory reports, written through the services like the rest of
the demo month: components in groups, a published incident now in the history, a scheduled
maintenance, a confirmed email subscriber, and a DORA classification with its first report drafted.

Each part is skipped when it exists already, so a second seed adds nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from incidents import roles
from incidents.escalation import regimes
from incidents.escalation.models import RegulatoryClassification, RegulatoryRegime
from incidents.models import OPEN_STATES, Incident, State, System
from incidents.status import services as status_services
from incidents.status.models import Maintenance, PublicIncident, StatusComponent, Subscriber

# system key → (public name, group, position); the infrastructure underneath stays off the page.
DEMO_COMPONENTS: dict[str, tuple[str, str, int]] = {
    "execution_engine": ("Order execution", "Trading", 1),
    "circuit_breaker": ("Trading safeguards", "Trading", 2),
    "risk_management": ("Pre-trade risk checks", "Trading", 3),
    "market_analysis": ("Market signals", "Market data and analytics", 4),
    "analytics": ("Analytics", "Market data and analytics", 5),
    "dashboard": ("Client dashboard", "Client portal", 6),
    "reporting": ("Statements and reports", "Client portal", 7),
}
DEMO_SUBSCRIBER = "ops-watch@clients.example"
DEMO_MAINTENANCE = "Database upgrade"
DORA_CRITERIA = ["clients", "critical_services"]


def _first(people: dict[str, list], role: str):
    return people[role][0]


def ensure_demo_status_page(*, people: dict[str, list], incidents: list[Incident], now: datetime) -> None:
    _components()
    _published_history(people=people, incidents=incidents)
    _maintenance(people=people, now=now)
    _subscriber(now=now)


def _components() -> None:
    systems = System.objects.in_bulk(list(DEMO_COMPONENTS), field_name="key")
    for key, (name, group, position) in DEMO_COMPONENTS.items():
        if key in systems:
            StatusComponent.objects.get_or_create(
                system=systems[key], defaults={"public_name": name, "group": group, "position": position}
            )
    for system in System.objects.exclude(key__in=list(DEMO_COMPONENTS)):
        StatusComponent.objects.get_or_create(system=system, defaults={"visible": False, "position": 100})


def _published_history(*, people: dict[str, list], incidents: list[Incident]) -> None:
    """The most recent resolved Sev1/Sev2 of the month, as it was published and resolved."""
    if PublicIncident.objects.exists():
        return
    done = [
        i
        for i in incidents
        if i.resolved_at and not i.is_drill and i.severity.level <= 2 and i.state not in (*OPEN_STATES, State.CANCELLED)
    ]
    if not done:
        return
    incident = max(done, key=lambda i: i.resolved_at)
    publisher = _first(people, roles.ON_CALL_ENGINEER)
    names = ", ".join(s.name for s in incident.affected_systems.all()) or "our services"
    at = incident.detected_at + (incident.resolved_at - incident.detected_at) / 4
    public = status_services.public_incident_publish(
        incident=incident,
        user=publisher,
        title=f"Delays affecting {names}",
        impact="partial_outage",
        status="investigating",
        message=f"We are investigating delays affecting {names}. Orders already placed are safe.",
        now=at,
    )
    status_services.public_incident_update(
        public_incident=public,
        user=publisher,
        status="identified",
        message="We have found the cause and are applying a fix.",
        now=at + (incident.resolved_at - at) / 2,
    )
    status_services.public_incident_update(
        public_incident=public,
        user=publisher,
        status="resolved",
        message="Service is back to normal. We are sorry for the disruption.",
        now=incident.resolved_at,
    )


def _maintenance(*, people: dict[str, list], now: datetime) -> None:
    if Maintenance.objects.filter(title=DEMO_MAINTENANCE).exists():
        return
    day = (now + timedelta(days=3)).replace(hour=22, minute=0, second=0, microsecond=0)
    status_services.maintenance_schedule(
        user=_first(people, roles.SYSTEM_ADMINISTRATOR),
        title=DEMO_MAINTENANCE,
        message="Market signals and analytics are paused while the database is upgraded; trading is not affected.",
        starts_at=day,
        ends_at=day + timedelta(hours=2),
        systems=System.objects.filter(key__in=["market_analysis", "analytics"]),
        now=now,
    )


def _subscriber(*, now: datetime) -> None:
    if Subscriber.objects.filter(email=DEMO_SUBSCRIBER, confirmed_at__isnull=False).exists():
        return
    pending = status_services.subscriber_subscribe_email(
        email=DEMO_SUBSCRIBER, components=["execution_engine", "circuit_breaker"], now=now - timedelta(days=2)
    )
    status_services.subscriber_confirm(token=pending.confirm_token, now=now - timedelta(days=2, minutes=-5))


def ensure_demo_regulatory(*, people: dict[str, list], incidents: list[Incident], now: datetime) -> None:
    """A live Sev1/Sev2 classified as a major incident under DORA an hour ago, its initial
    notification drafted by the risk manager and waiting for the Head of Risk's sign-off."""
    dora = RegulatoryRegime.objects.filter(key="dora", active=True).first()
    if dora is None or RegulatoryClassification.objects.filter(regime=dora).exists():
        return
    candidates = [
        i
        for i in incidents
        if i.state in OPEN_STATES
        and not i.is_drill
        and i.severity.level <= 2
        and i.detected_at <= now - timedelta(hours=1)
    ]
    if not candidates:
        return
    incident = max(candidates, key=lambda i: i.detected_at)
    risk = _first(people, roles.RISK_MANAGER)
    at = now - timedelta(hours=1)
    regimes.regulatory_classify(
        incident=incident,
        regime=dora,
        user=risk,
        reportable=True,
        criteria_met=DORA_CRITERIA,
        rationale="Clients' orders were rejected on a critical service for over an hour.",
        now=at,
    )
    initial = incident.obligations.filter(stage__key="initial", regime=dora).first()
    if initial is not None:
        regimes.regulatory_draft(obligation=initial, user=risk, now=at + timedelta(minutes=20))
