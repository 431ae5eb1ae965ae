from datetime import time
from decimal import Decimal
from functools import cache

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from incidents import services
from incidents.models import DetectionMethod, SeverityLevel, System

DEMO_PASSWORD = "tmt-demo-2026"


@cache
def demo_password_hash() -> str:
    """The demo password hashed once per test run: the default hasher (PBKDF2, a million rounds)
    costs ~0.3 s a user here, which made setting up a roster of eight people most of a test's time.
    The hash is a real one, so logging in through the form and in a served process still works."""
    return make_password(DEMO_PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@tmt.example")
    password = factory.LazyFunction(demo_password_hash)


def severity(level: int) -> SeverityLevel:
    return SeverityLevel.objects.get(level=level)


def system(key: str) -> System:
    return System.objects.get(key=key)


def open_incident(
    *,
    reported_by=None,
    level: int = 2,
    title: str = "Market analysis agent not responding",
    systems: tuple[str, ...] = ("market_analysis",),
    financial_impact_usd: Decimal | None = Decimal("2500"),
    category: str = "operational",
    **kwargs,
):
    """An incident opened the way users open them: through the service."""
    return services.incident_open(
        title=title,
        severity=severity(level),
        reported_by=reported_by or UserFactory(),
        detection_method=kwargs.pop("detection_method", DetectionMethod.AUTOMATED_ALERT),
        affected_systems=[system(k) for k in systems],
        financial_impact_usd=financial_impact_usd,
        category=category,
        **kwargs,
    )


def tick_initial_assessment(incident, user) -> None:
    for item in incident.checklist_items.filter(gates_containment=True):
        services.checklist_item_set_done(item=item, user=user, done=True)


def contain(incident, user, *, at=None):
    """Work a new incident to contained through the services, as responders would."""
    from incidents import services as incident_services

    kw = {"at": at} if at else {}
    incident_services.incident_transition(incident=incident, name="acknowledge", user=user, **kw)
    incident_services.incident_transition(incident=incident, name="start_investigation", user=user, **kw)
    tick_initial_assessment(incident, user)
    incident_services.incident_transition(incident=incident, name="contain", user=user, **kw)
    incident.refresh_from_db()
    return incident


def resolve(incident, user, *, at=None, resolution: str = "Restarted the market analysis agent."):
    """Work an open incident to resolved through the services, as responders would."""
    from incidents import services as incident_services

    kw = {"at": at} if at else {}
    contain(incident, user, at=at)
    incident = incident_services.incident_update(incident=incident, user=user, resolution_actions=resolution)
    incident_services.incident_transition(incident=incident, name="resolve", user=user, **kw)
    incident.refresh_from_db()
    return incident


def display_name(user) -> str:
    """How the portal names a person on the record."""
    return user.get_full_name() or user.get_username()


def person(user, *, phone: str = "", sms: str = "", tz: str = "UTC"):
    from incidents.oncall.models import Person

    Person.objects.update_or_create(user=user, defaults={"phone": phone, "sms_number": sms, "timezone": tz})
    return user


def make_roster(*, starts_on=None) -> dict:
    """The seed's response team, reachable: three on-call engineers in a daily rotation (the
    first on call today), and a contact for each escalation role."""
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents.oncall.models import OnCallRotation, RoleContact, RotationMember
    from incidents.roles import ensure_role_groups

    ensure_role_groups()
    people = {}
    numbers = iter(range(100, 200))
    for key, role in [
        ("oncall1", "On-Call Engineer"),
        ("oncall2", "On-Call Engineer"),
        ("oncall3", "On-Call Engineer"),
        ("im", "Incident Manager"),
        ("im_deputy", "Incident Manager"),
        ("cto", "CTO"),
        ("head_of_risk", "Head of Risk Management"),
        ("ceo", "CEO"),
    ]:
        user = UserFactory(username=key)
        user.groups.add(Group.objects.get(name=role))
        person(user, phone=f"+4420700{next(numbers)}", sms=f"+4477000{next(numbers)}")
        certify(user)  # the readiness gate (drills) lets a trained, certified team on call
        people[key] = user
    today = starts_on or timezone.now().astimezone(timezone.get_fixed_timezone(0)).date()
    rotation = OnCallRotation.objects.create(
        name="Primary on-call",
        role=Group.objects.get(name="On-Call Engineer"),
        shift=OnCallRotation.Shift.DAILY,
        handover_time=time(0, 0),
        timezone="UTC",
        starts_on=today,
    )
    for position, key in enumerate(["oncall1", "oncall2", "oncall3"]):
        RotationMember.objects.create(rotation=rotation, user=people[key], position=position)
    for role, primary, deputy in [
        ("Incident Manager", "im", "im_deputy"),
        ("CTO", "cto", None),
        ("Head of Risk Management", "head_of_risk", None),
        ("CEO", "ceo", None),
    ]:
        RoleContact.objects.create(
            role=Group.objects.get(name=role), primary=people[primary], deputy=people.get(deputy) if deputy else None
        )
    people["rotation"] = rotation
    return people


def certify(user, *, issued_on=None, mentoring_done: bool = True, acknowledged: bool = True):
    """Give `user` every active certification, issued a month ago (so valid for the annual one's
    11 more months), mark their mentoring done and acknowledge the current procedures: what the
    readiness gate asks of a responder."""
    from datetime import timedelta

    from django.utils import timezone

    from drills.models import Certification, CertificationKind, ProcedureAcknowledgement, TrainingProfile
    from drills.selectors import current_procedure

    issued = issued_on or timezone.localdate() - timedelta(days=30)
    for kind in CertificationKind.objects.filter(active=True):
        Certification.objects.create(
            person=user,
            kind=kind,
            issued_on=issued,
            expires_on=kind.default_expiry(issued),
            issued_by=user,
            recorded_by=user,
        )
    if mentoring_done:
        TrainingProfile.objects.update_or_create(
            user=user,
            defaults={"mentoring_waived_at": timezone.now(), "mentoring_waiver_reason": "Experienced responder"},
        )
    procedure = current_procedure()
    if acknowledged and procedure is not None:
        ProcedureAcknowledgement.objects.get_or_create(
            document=procedure, person=user, defaults={"acknowledged_at": timezone.now()}
        )
    return user


def deliver_outbox(*, now=None) -> list[str]:
    """Send what the outbox holds due at `now`, as the paging dispatcher would (one pass)."""
    from incidents.notifications import services as notifications

    return [
        notifications.notification_send(notification=notification)
        for notification in notifications.notifications_claim_due(limit=100, now=now)
    ]
