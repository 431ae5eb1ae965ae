"""Incident roles: given, taken, left, paged, refused, on the page, in the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from drills.models import ParticipantRole
from incidents import services
from incidents.models import AppendOnlyError, IncidentRole, IncidentRoleAssignment, TimelineEntry
from incidents.notifications.models import Notification
from incidents.oncall.models import OnCallOverride, OnCallRotation, RotationMember
from incidents.oncall.selectors import on_call_at
from tests.celery_fixtures import sms_provider  # noqa: F401 - fixture
from tests.conftest import _user_in
from tests.factories import certify, deliver_outbox, make_roster, open_incident, person

pytestmark = pytest.mark.django_db

SCRIBE = IncidentRole.SCRIBE


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


@pytest.fixture
def risk(db):
    return person(_user_in("Risk Manager", "risk"), sms="+447700900300")


@pytest.fixture
def responder(engineer):
    return person(engineer, sms="+447700900100", phone="+442070900100")


def _pages_to(user) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user).order_by("pk"))


def _role_entries(incident) -> list[str]:
    return list(
        incident.timeline.filter(kind=TimelineEntry.Kind.UPDATE, data__has_key="role")
        .order_by("id")
        .values_list("action", flat=True)
    )


def _current(incident, role=SCRIBE):
    return IncidentRoleAssignment.objects.current().filter(incident=incident, role=role).first()


def test_a_manager_gives_the_scribe_role_which_is_recorded_and_paged(manager, responder, sms_provider):  # noqa: F811
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)

    row = _current(incident)
    assert (row.holder, row.assigned_by, row.ended_at) == (responder, manager, None)
    assert _role_entries(incident) == [f"{_name(responder)} is now scribe (assigned by {_name(manager)})"]
    sms, email = _pages_to(responder)
    assert (sms.channel, sms.address, email.channel, email.address) == (
        "sms",
        "+447700900100",
        "email",
        responder.email,
    )
    assert all(n.incident == incident and n.event is None for n in (sms, email)), "informational, not an escalation"
    assert not Notification.objects.filter(channel=Notification.Channel.PHONE).exists(), "no call for a role"

    assert sorted(deliver_outbox()) == ["sent", "sent"]
    (received,) = sms_provider.to("+447700900100")
    assert f"{_name(manager)} made you scribe" in received["body"] and incident.reference in received["body"]
    (message,) = mail.outbox
    assert message.to == [responder.email] and "you are scribe" in message.subject


def test_taking_an_empty_role_yourself_pages_nobody(engineer_client, responder):
    incident = open_incident(reported_by=responder)
    response = engineer_client.post(
        reverse("incidents:role", args=[incident.reference]), {"role": SCRIBE, "holder": responder.pk}
    )
    assert response.status_code == 302
    assert _current(incident).holder == responder
    assert _role_entries(incident) == [f"{_name(responder)} is now scribe (took the role)"]
    assert _pages_to(responder) == []


def test_a_new_holder_takes_over_and_the_old_holding_stays_in_the_history(manager, responder, risk):
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=risk, by=manager)

    first, second = IncidentRoleAssignment.objects.filter(incident=incident).order_by("pk")
    assert (first.holder, first.ended_by, second.holder, second.ended_at) == (responder, manager, risk, None)
    assert first.ended_at is not None
    assert _role_entries(incident)[-1] == (
        f"{_name(risk)} is now scribe, taking over from {_name(responder)} (assigned by {_name(manager)})"
    )
    assert len(_pages_to(risk)) == 2  # SMS and email
    # Assigning the holder again changes nothing: no row, no entry, no page.
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=risk, by=manager)
    assert IncidentRoleAssignment.objects.filter(incident=incident).count() == 2
    assert len(_role_entries(incident)) == 2 and len(_pages_to(risk)) == 2


def test_a_holder_steps_down_and_a_manager_releases_another(engineer_client, manager, responder, risk):
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)
    services.incident_role_assign(incident=incident, role=IncidentRole.RISK_LIAISON, holder=risk, by=manager)
    pages = Notification.objects.count()

    url = reverse("incidents:role", args=[incident.reference])
    assert engineer_client.post(url, {"role": SCRIBE, "holder": ""}).status_code == 302
    assert _current(incident) is None
    services.incident_role_release(incident=incident, role=IncidentRole.RISK_LIAISON, by=manager)
    assert _current(incident, IncidentRole.RISK_LIAISON) is None
    assert _role_entries(incident)[-2:] == [
        f"{_name(responder)} is no longer scribe (stepped down)",
        f"{_name(risk)} is no longer risk liaison (released by {_name(manager)})",
    ]
    assert Notification.objects.count() == pages, "leaving a role pages nobody"


def test_a_responder_may_neither_replace_a_holder_nor_assign_someone_else(engineer_client, manager, responder, risk):
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=risk, by=manager)
    before = (IncidentRoleAssignment.objects.count(), TimelineEntry.objects.count(), Notification.objects.count())
    url = reverse("incidents:role", args=[incident.reference])
    api = APIClient()
    api.force_authenticate(responder)
    api_url = reverse("api:incident-roles", args=[incident.reference])
    for role, holder in [
        (SCRIBE, responder),  # held by someone else
        (IncidentRole.COMMUNICATIONS, manager),  # empty, but for someone else
        (SCRIBE, None),  # someone else's role, released
    ]:
        page = engineer_client.post(url, {"role": role, "holder": holder.pk if holder else ""})
        answer = api.post(api_url, {"role": role, "holder": holder.username if holder else None}, format="json")
        assert (page.status_code, answer.status_code) == (403, 403), (role, holder)
        assert answer.json()["detail"]
    after = (IncidentRoleAssignment.objects.count(), TimelineEntry.objects.count(), Notification.objects.count())
    assert after == before


def test_without_the_change_right_nobody_takes_a_role(client, trainer, engineer):
    incident = open_incident(reported_by=engineer)
    client.force_login(trainer)
    url = reverse("incidents:role", args=[incident.reference])
    assert client.post(url, {"role": SCRIBE, "holder": trainer.pk}).status_code == 403
    with pytest.raises(PermissionDenied):
        services.incident_role_assign(incident=incident, role=SCRIBE, holder=trainer, by=trainer)
    assert not IncidentRoleAssignment.objects.exists()


def test_the_risk_liaison_must_be_a_risk_manager(manager_client, manager, responder, risk):
    incident = open_incident(reported_by=manager)
    entries = TimelineEntry.objects.count()
    url = reverse("incidents:role", args=[incident.reference])

    page = manager_client.post(url, {"role": IncidentRole.RISK_LIAISON, "holder": responder.pk})
    assert page.status_code == 400
    problem = f"The risk liaison must be a Risk Manager; {_name(responder)} is not one."
    assert page.context["role_form"].errors == {"holder": [problem]}
    assert problem in page.content.decode()
    api = APIClient()
    api.force_authenticate(manager)
    answer = api.post(
        reverse("api:incident-roles", args=[incident.reference]),
        {"role": IncidentRole.RISK_LIAISON, "holder": responder.username},
        format="json",
    )
    assert answer.status_code == 400 and answer.json() == {"holder": [problem]}
    assert not IncidentRoleAssignment.objects.exists()
    assert TimelineEntry.objects.count() == entries and not Notification.objects.exists()

    # A Risk Manager may.
    assert manager_client.post(url, {"role": IncidentRole.RISK_LIAISON, "holder": risk.pk}).status_code == 302
    assert _current(incident, IncidentRole.RISK_LIAISON).holder == risk


def test_bad_role_input_is_a_field_error(manager_client, manager):
    incident = open_incident(reported_by=manager)
    url = reverse("incidents:role", args=[incident.reference])
    for data in ({"role": "janitor", "holder": manager.pk}, {"role": SCRIBE, "holder": "999999"}, {}):
        page = manager_client.post(url, data)
        assert page.status_code == 400, data
        assert page.context["role_form"].errors
    api = APIClient()
    api.force_authenticate(manager)
    url = reverse("api:incident-roles", args=[incident.reference])
    answer = api.post(url, {"role": "janitor", "holder": "nobody"}, format="json")
    assert answer.status_code == 400 and set(answer.json()) == {"role", "holder"}
    answer = api.post(url, {"role": SCRIBE, "holder": manager.username, "extra": 1}, format="json")
    assert answer.status_code == 400 and set(answer.json()) == {"extra"}
    assert not IncidentRoleAssignment.objects.exists()


def test_roles_of_an_incident_that_is_over_do_not_change(manager, responder):
    incident = open_incident(reported_by=manager)
    services.incident_transition(incident=incident, name="cancel", user=manager, reason="False alarm")
    with pytest.raises(ValidationError) as refused:
        services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)
    assert "role" in refused.value.message_dict
    assert not IncidentRoleAssignment.objects.exists()


def test_todays_on_call_is_offered_and_assigned_in_one_click(client):
    team = make_roster()
    on_call, im = team["oncall1"], team["im"]
    incident = open_incident(reported_by=im, commander=im)
    client.force_login(im)
    page = client.get(incident.get_absolute_url())
    offers = {slot.role: slot.on_call for slot in page.context["role_slots"]}
    assert offers == {
        IncidentRole.COMMANDER: on_call,
        SCRIBE: on_call,
        IncidentRole.COMMUNICATIONS: on_call,
        IncidentRole.RISK_LIAISON: None,  # no Risk Manager rotation or contact in this roster
    }
    assert f"Today's on-call: {escape(_name(on_call))}" in page.content.decode()

    # The button posts the on-call person for the role.
    client.post(reverse("incidents:role", args=[incident.reference]), {"role": SCRIBE, "holder": on_call.pk})
    assert _current(incident).holder == on_call
    assert [n.channel for n in _pages_to(on_call)] == ["sms", "email"]
    # Held by the on-call person: no offer for it any more.
    page = client.get(incident.get_absolute_url())
    scribe = next(slot for slot in page.context["role_slots"] if slot.role == SCRIBE)
    assert scribe.holder == on_call


def test_the_offer_follows_an_override_and_a_risk_manager_rotation(client, risk):
    team = make_roster()
    cover = person(_user_in("On-Call Engineer", "cover"), sms="+447700900400")
    now = timezone.now()
    OnCallOverride.objects.create(
        rotation=team["rotation"], user=cover, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1)
    )
    risk_rotation = OnCallRotation.objects.create(
        name="Risk on-call",
        role=Group.objects.get(name="Risk Manager"),
        shift=OnCallRotation.Shift.DAILY,
        handover_time=team["rotation"].handover_time,
        timezone="UTC",
        starts_on=team["rotation"].starts_on,
    )
    RotationMember.objects.create(rotation=risk_rotation, user=risk, position=0)
    incident = open_incident(reported_by=team["im"])
    client.force_login(team["im"])
    offers = {slot.role: slot.on_call for slot in client.get(incident.get_absolute_url()).context["role_slots"]}
    assert offers[SCRIBE] == cover == on_call_at("On-Call Engineer", timezone.now())
    assert offers[IncidentRole.RISK_LIAISON] == risk


def test_the_on_call_person_is_offered_an_empty_role_for_themselves_and_nobody_else_is(client):
    team = make_roster()
    on_call, other = team["oncall1"], team["oncall2"]
    incident = open_incident(reported_by=other)
    button = 'data-testid="assign-on-call"'
    client.force_login(on_call)
    assert button in client.get(incident.get_absolute_url()).content.decode()
    client.force_login(other)  # may not assign the on-call person, so is not offered to
    assert button not in client.get(incident.get_absolute_url()).content.decode()


def test_the_commander_is_a_role_like_the_others(manager, client):
    team = make_roster()
    on_call = team["oncall1"]
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=IncidentRole.COMMANDER, holder=on_call, by=manager)
    incident.refresh_from_db()
    assert incident.commander == on_call
    assert incident.timeline.filter(action=f"Incident commander: {_name(on_call)}").exists()
    assert [n.channel for n in _pages_to(on_call)] == ["sms", "email"]
    assert not IncidentRoleAssignment.objects.exists(), "the commander stays the incident's own field"
    services.incident_role_release(incident=incident, role=IncidentRole.COMMANDER, by=manager)
    incident.refresh_from_db()
    assert incident.commander is None


def test_the_api_shows_each_role_and_its_holder_and_changes_them(manager, responder):
    incident = open_incident(reported_by=manager, commander=manager)
    api = APIClient()
    api.force_authenticate(manager)
    url = reverse("api:incident-roles", args=[incident.reference])
    answer = api.post(url, {"role": SCRIBE, "holder": responder.username}, format="json")
    assert answer.status_code == 200
    roles = {r["role"]: r for r in answer.json()}
    assert roles[SCRIBE]["holder"] == responder.username and roles[SCRIBE]["assigned_by"] == manager.username
    detail = api.get(reverse("api:incident-detail", args=[incident.reference])).json()
    assert [(r["role"], r["holder"]) for r in detail["roles"]] == [
        ("incident_commander", manager.username),
        ("scribe", responder.username),
        ("communications", None),
        ("risk_manager", None),
    ]
    assert api.post(url, {"role": SCRIBE, "holder": None}, format="json").status_code == 200
    assert _current(incident) is None
    assert [r["holder"] for r in api.get(url).json()] == [manager.username, None, None, None]


def test_role_values_are_the_drills_participant_roles():
    assert set(IncidentRole.values) <= set(ParticipantRole.values)


def test_the_role_history_is_ended_never_edited_or_deleted(manager, responder, postgres):
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)
    row = _current(incident)
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        IncidentRoleAssignment.objects.all().delete()
    table = IncidentRoleAssignment._meta.db_table
    for sql in (f"UPDATE {table} SET holder_id = {manager.pk}", f"DELETE FROM {table}"):  # noqa: S608 - fixed name
        with pytest.raises(Exception, match="keeps its history"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    services.incident_role_release(incident=incident, role=SCRIBE, by=manager)  # ending once is allowed
    with pytest.raises(Exception, match="keeps its history"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"UPDATE {table} SET ended_at = now()")  # noqa: S608 - fixed name


def test_only_one_current_holder_per_role(manager, responder, risk):
    incident = open_incident(reported_by=manager)
    services.incident_role_assign(incident=incident, role=SCRIBE, holder=responder, by=manager)
    # What a concurrent assignment that read "empty" would insert: the database refuses it.
    with pytest.raises(IntegrityError), transaction.atomic():
        IncidentRoleAssignment.objects.create(
            incident=incident, role=SCRIBE, holder=risk, assigned_by=manager, assigned_at=timezone.now()
        )
    assert _current(incident).holder == responder


def test_every_way_of_naming_a_commander_pages_them_through_the_roles(manager, manager_client, responder):
    # The incident page's older commander form, the API's commander action and the roles panel
    # all go through the same service: the new commander is paged whichever was used.
    certify(responder)
    by_form = open_incident(reported_by=manager)
    manager_client.post(reverse("incidents:commander", args=[by_form.reference]), {"commander": responder.pk})
    api = APIClient()
    api.force_authenticate(manager)
    by_api = open_incident(reported_by=manager)
    answer = api.post(
        reverse("api:incident-commander", args=[by_api.reference]), {"commander": responder.username}, format="json"
    )
    assert answer.status_code == 200, answer.content
    for incident in (by_form, by_api):
        incident.refresh_from_db()
        assert incident.commander == responder
        assert Notification.objects.filter(incident=incident, recipient=responder).exists(), "the commander is paged"
