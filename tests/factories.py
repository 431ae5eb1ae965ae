from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from incidents import services
from incidents.models import DetectionMethod, SeverityLevel, System

DEMO_PASSWORD = "tmt-demo-2026"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@tmt.example")
    password = factory.PostGenerationMethodCall("set_password", DEMO_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


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
