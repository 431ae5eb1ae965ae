from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from incidents import services
from incidents.devtools.demo import DEMO_PASSWORD, DEMO_USERS
from incidents.models import Incident, IncidentChecklistItem, State, TimelineEntry
from incidents.roles import INCIDENT_MANAGER, ROLE_PERMISSIONS
from reports.models import PostIncidentReview
from reports.services import review_content_verifies
from tests.factories import open_incident

PHASES = (
    "detected_at",
    "acknowledged_at",
    "investigating_at",
    "contained_at",
    "recovering_at",
    "resolved_at",
    "review_started_at",
    "closed_at",
)


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="class")
def seeded(django_db_setup, django_db_blocker):
    """One default demo month shared by a class's tests (seeding takes seconds), then rolled back."""
    with django_db_blocker.unblock(), transaction.atomic():
        output = seed()
        yield output
        transaction.set_rollback(True)


@pytest.fixture
def month(seeded, db):
    return list(Incident.objects.select_related("severity"))


class TestDefaultMonth:
    def test_creates_demo_users_in_every_role_group(self, seeded, db):
        User = get_user_model()
        for role in ROLE_PERMISSIONS:
            members = Group.objects.get(name=role).user_set.filter(email__endswith="@tmt.example")
            assert members.exists(), role
        assert Group.objects.get(name="On-Call Engineer").user_set.count() >= 3
        assert Group.objects.get(name="System Administrator").user_set.count() >= 2
        managers = Group.objects.get(name=INCIDENT_MANAGER).user_set.all()
        assert managers.count() >= 2 and all(m.is_staff for m in managers)
        admin = User.objects.get(username="admin")
        assert admin.is_superuser and admin.check_password(DEMO_PASSWORD)
        assert User.objects.get(username=DEMO_USERS[0].username).check_password(DEMO_PASSWORD)
        # The table the README points people at.
        for spec in DEMO_USERS:
            assert spec.username in seeded and spec.role in seeded
        assert DEMO_PASSWORD in seeded

    def test_month_covers_every_state_and_severity(self, month):
        now = timezone.now()
        assert len(month) >= 30
        assert {i.state for i in month} == set(State.values)
        assert {i.severity.level for i in month} == {1, 2, 3, 4}
        assert all(now - timedelta(days=30) <= i.detected_at <= now for i in month)
        live = [i for i in month if i.is_open and i.detected_at >= now - timedelta(hours=1)]
        assert len(live) >= 3, "the dashboard needs running response clocks"

    def test_closed_sev1_and_sev2_have_an_approved_review_by_someone_else(self, month):
        closed = [i for i in month if i.state == State.CLOSED and i.severity.level <= 2]
        assert closed
        for incident in closed:
            review = incident.reviews.get(state=PostIncidentReview.State.APPROVED)
            assert review.approved_by_id and review.approved_by_id != review.author_id
            # Approved through the review service: the report was frozen with its content hash.
            assert review_content_verifies(review)
            assert review.approved_by.has_perm("reports.approve_review")
            assert incident.resolved_at < review.submitted_at < review.approved_at < incident.closed_at

    def test_every_incident_has_a_consistent_past_timeline(self, month):
        now = timezone.now()
        for incident in month:
            entries = list(incident.timeline.all())
            assert entries, incident.reference
            assert all(e.occurred_at <= now for e in entries), incident.reference
            assert entries[0].occurred_at == incident.detected_at
            phases = [getattr(incident, f) for f in PHASES if getattr(incident, f)]
            assert phases == sorted(phases) and phases[-1] <= now, incident.reference
        ticked = IncidentChecklistItem.objects.filter(done_at__isnull=False).select_related("incident")
        assert ticked.count() > 100
        assert all(i.incident.detected_at <= i.done_at <= now for i in ticked)
        assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.NOTE).values("owner").distinct().count() >= 6

    def test_financial_impact_is_in_the_severity_band(self, month):
        for incident in month:
            if incident.financial_impact_usd is None:
                continue
            suggestion = services.severity_suggest(financial_impact_usd=incident.financial_impact_usd)
            expected = incident.severity.level if incident.severity.level <= 2 else None
            assert (suggestion.severity.level if suggestion else None) == expected, incident.reference

    def test_resolved_incidents_carry_root_cause_and_resolution(self, month):
        done = [i for i in month if i.state in (State.RESOLVED, State.IN_REVIEW, State.CLOSED)]
        assert done
        assert all(i.primary_cause and i.resolution_actions and i.verification_steps for i in done)
        assert all(i.cancel_reason for i in month if i.state == State.CANCELLED)

    def test_status_page_shows_grouped_components_history_and_maintenance(self, month, client):
        from incidents.status import cache as status_cache
        from incidents.status.models import PublicIncident, Subscriber

        status_cache.invalidate()  # the seed's own invalidation waits for a commit this class never makes
        shown = client.get("/status.json").json()
        assert [g["name"] for g in shown["groups"]] == ["Trading", "Market data and analytics", "Client portal"]
        assert "Database" not in {c["name"] for g in shown["groups"] for c in g["components"]}
        assert shown["incidents"] == [] and len(shown["history"]) == 1
        published = PublicIncident.objects.get()
        assert [u["status"] for u in shown["history"][0]["updates"]] == ["resolved", "identified", "investigating"]
        assert published.incident.title not in str(shown) and published.resolved_at == published.incident.resolved_at
        assert [(m["title"], m["state"]) for m in shown["maintenance"]] == [("Database upgrade", "scheduled")]
        assert Subscriber.objects.get(confirmed_at__isnull=False, unsubscribed_at=None).email.endswith(
            "clients.example"
        )

    def test_a_live_incident_is_classified_under_dora_with_its_initial_report_drafted(self, month):
        from incidents.escalation.models import RegulatoryClassification

        classification = RegulatoryClassification.objects.select_related("incident").get(regime__key="dora")
        assert classification.reportable and classification.incident.is_open
        assert classification.classified_by.groups.filter(name="Risk Manager").exists()
        initial = classification.obligations.get(stage__key="initial")
        assert initial.drafted_at and initial.content["summary"].startswith(classification.incident.reference)
        assert initial.signed_off_at is None and initial.submitted_at is None
        assert initial.due_at > timezone.now()  # the clock is running, not yet overdue


@pytest.mark.django_db
def test_if_empty_on_a_non_empty_db_creates_nothing():
    open_incident()
    assert Incident.objects.count() == 1
    counts = (
        get_user_model().objects.count(),
        Incident.objects.count(),
        TimelineEntry.objects.count(),
    )
    out = seed("--if-empty")
    assert "already exist" in out
    assert counts == (
        get_user_model().objects.count(),
        Incident.objects.count(),
        TimelineEntry.objects.count(),
    )


@pytest.mark.django_db
def test_same_seed_gives_the_same_month_and_users_are_not_duplicated():
    def shape() -> list[tuple]:
        return list(
            Incident.objects.order_by("detected_at").values_list(
                "title", "severity__level", "state", "commander__username"
            )
        )

    assert not Incident.objects.exists()
    with transaction.atomic():
        seed("--incidents", "8", "--seed", "3")
        first = shape()
        transaction.set_rollback(True)
    seed("--incidents", "8", "--seed", "3")
    assert shape() == first and len(first) == 8
    users = get_user_model().objects.count()
    out = seed("--incidents", "1", "--seed", "4")
    assert get_user_model().objects.count() == users
    assert "existing user" in out
    assert Incident.objects.count() == 9
