"""The drills admin: policy tables editable, records read-only, every page loads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from drills import selectors, services
from drills.models import CertificationKind, Drill, TrainingPolicy
from incidents.oncall.models import OnCallRotation

from .conftest import schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def su_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@tmt.example", "x-pass-123"))
    return client


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_drills_admin_page_loads(su_client, trainer_user, team, newbie, rf):
    boss = get_user_model().objects.get(username="boss")
    drill = schedule(trainer_user, participants=[team["oncall2"], newbie])
    services.drill_start(drill=drill, user=trainer_user)
    services.drill_complete(
        drill=drill,
        user=trainer_user,
        result="met",
        attendance=[services.AttendanceInput(participant_id=p.pk, attended=True) for p in drill.participants.all()],
        findings=[services.FindingInput(title="Fix it", owner=team["oncall2"], due_date=timezone.localdate())],
    )
    services.certification_record(
        person=newbie,
        kind=CertificationKind.objects.get(key="annual-certification"),
        issued_on=timezone.localdate(),
        issued_by=trainer_user,
        recorded_by=trainer_user,
    )
    services.readiness_override_grant(
        person=newbie,
        duty="on_call",
        justification="Cover",
        granted_by=team["im"],
        valid_until=timezone.now() + timedelta(hours=2),
    )
    services.procedure_acknowledge(document=selectors.current_procedure(), user=newbie)
    services.calendar_token_issue(user=newbie)
    request = rf.get("/")
    request.user = boss
    registered = [m for m in admin.site._registry if m._meta.app_label == "drills"]
    assert len(registered) == 11
    for model in registered:
        assert su_client.get(_url(model, "changelist")).status_code == 200, model
        obj = model._default_manager.first()
        assert obj is not None, model
        assert su_client.get(_url(model, "change", obj.pk)).status_code == 200, model
        if admin.site._registry[model].has_add_permission(request):
            assert su_client.get(_url(model, "add")).status_code == 200, model
    # The rotation's page shows the gate's fields on each member row.
    html = su_client.get(_url(OnCallRotation, "change", team["rotation"].pk)).content.decode()
    assert (
        'name="members-0-readiness_override"' in html and 'name="overrides-__prefix__-readiness_justification"' in html
    )


def test_records_are_read_only_and_policy_is_editable(su_client, trainer_user):
    drill = schedule(trainer_user)
    response = su_client.post(_url(Drill, "change", drill.pk), {"title": "Hacked"})
    assert response.status_code == 403
    assert Drill.objects.get(pk=drill.pk).title != "Hacked"
    bad = su_client.post(
        _url(TrainingPolicy, "change", 1),
        {
            "mentored_responses_required": "2",
            "expiring_within_days": "30",
            "certification_reminder_days": "30, soon",
            "drill_reminder_hours": "24",
        },
    )
    assert bad.status_code == 200
    assert "“soon” is not a number of days" in " ".join(
        bad.context["adminform"].form.errors["certification_reminder_days"]
    )
    ok = su_client.post(
        _url(TrainingPolicy, "change", 1),
        {
            "mentored_responses_required": "2",
            "expiring_within_days": "45",
            "certification_reminder_days": "60,30,7",
            "drill_reminder_hours": "48,2",
        },
    )
    assert ok.status_code == 302
    policy = TrainingPolicy.objects.get()
    assert policy.certification_reminder_list == [60, 30, 7] and policy.drill_reminder_list == [48, 2]


def test_a_new_certification_kind_added_in_the_admin_is_required_of_its_roles(su_client, team):
    from django.contrib.auth.models import Group

    role = Group.objects.get(name="On-Call Engineer")
    response = su_client.post(
        _url(CertificationKind, "add"),
        {
            "key": "cloud-failover",
            "name": "Cloud failover",
            "description": "",
            "validity_months": "24",
            "required_for": [role.pk],
            "active": "on",
            "order": "5",
        },
    )
    assert response.status_code == 302
    problems = services.readiness_problems(user=team["oncall1"], at=timezone.now())
    assert problems == ["No Cloud failover on record."]
