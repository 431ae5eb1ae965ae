"""Certifications, mentoring and the readiness gate on the roster and on incident command."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from drills import selectors, services
from drills.models import (
    Certification,
    CertificationKind,
    DrillKind,
    MentoredResponse,
    ReadinessOverride,
    Reminder,
)
from incidents import services as incident_services
from incidents.oncall.models import OnCallOverride, OnCallRotation, RotationMember
from tests.factories import (
    UserFactory,
    certify,
    deliver_outbox,
    open_incident,
    tick_initial_assessment,
)

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate


def annual() -> CertificationKind:
    return CertificationKind.objects.get(key="annual-certification")


def training() -> CertificationKind:
    return CertificationKind.objects.get(key="incident-response-training")


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _split(prefix: str, value: datetime) -> dict:
    value = value.astimezone(UTC)
    return {f"{prefix}_0": value.date().isoformat(), f"{prefix}_1": value.time().strftime("%H:%M:%S")}


@pytest.fixture
def lapsed(team):
    """An experienced on-call engineer whose annual certification ran out yesterday."""
    user = UserFactory(username="lapsed", first_name="Lee", last_name="Lapsed")
    user.groups.add(Group.objects.get(name="On-Call Engineer"))
    certify(user, issued_on=TODAY() - timedelta(days=400))
    record = Certification.objects.get(person=user, kind=annual())
    assert record.expires_on < TODAY()
    return user


@pytest.fixture
def su_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@tmt.example", "x-pass-123"))
    return client


@pytest.fixture
def manager_admin(client, team):
    im = team["im"]
    im.is_staff = True
    im.save()
    client.force_login(im)
    return client


# -- certifications --------------------------------------------------------------------------


def test_an_expiry_before_the_issue_date_is_refused_and_nothing_saved(trainer_user, team):
    person = team["oncall2"]
    count = Certification.objects.count()
    for expires in (date(2025, 1, 1), date(2025, 3, 1)):
        with pytest.raises(ValidationError) as caught:
            services.certification_record(
                person=person,
                kind=annual(),
                issued_on=date(2025, 3, 1),
                expires_on=expires,
                issued_by=trainer_user,
                recorded_by=trainer_user,
            )
        assert "must be after the issue date" in caught.value.message_dict["expires_on"][0]
    assert Certification.objects.count() == count


def test_the_annual_certification_expires_twelve_months_after_issue_with_reminders(trainer_user, newbie):
    issued = TODAY() - timedelta(days=10)
    record = services.certification_record(
        person=newbie,
        kind=annual(),
        issued_on=issued,
        issued_by=trainer_user,
        recorded_by=trainer_user,
        evidence=SimpleUploadedFile("certificate.pdf", b"%PDF-1.4 certificate", "application/pdf"),
        evidence_note="Course IR-201, score 92%",
    )
    assert record.expires_on == date(issued.year + 1, issued.month, issued.day) or issued == date(issued.year, 2, 29)
    leads = sorted(r.lead.days for r in Reminder.objects.filter(certification=record))
    assert leads == [7, 30]
    # The older record's reminders are withdrawn by the renewal.
    old = Certification.objects.filter(person=newbie, kind=annual()).exclude(pk=record.pk).get()
    assert not Reminder.objects.filter(certification=old, cancelled_at=None).exists()
    assert (
        services.certification_record(
            person=newbie, kind=training(), issued_on=TODAY(), issued_by=trainer_user, recorded_by=trainer_user
        ).expires_on
        is None
    )


def test_a_renamed_executable_is_not_accepted_as_evidence(trainer_user, newbie):
    with pytest.raises(ValidationError) as caught:
        services.certification_record(
            person=newbie,
            kind=annual(),
            issued_on=TODAY(),
            issued_by=trainer_user,
            recorded_by=trainer_user,
            evidence=SimpleUploadedFile("certificate.pdf", b"MZ\x90\x00 not a pdf", "application/pdf"),
        )
    assert "evidence" in caught.value.message_dict
    assert not Certification.objects.filter(person=newbie, issued_on=TODAY()).exists()


def test_certification_expiry_reminders_go_out_30_and_7_days_before(trainer_user, team):
    newbie = UserFactory(username="fresh")
    record = services.certification_record(
        person=newbie,
        kind=annual(),
        issued_on=TODAY() - timedelta(days=300),
        issued_by=trainer_user,
        recorded_by=trainer_user,
    )
    # A back-dated older record changes nothing.
    services.certification_record(
        person=newbie,
        kind=annual(),
        issued_on=TODAY() - timedelta(days=700),
        issued_by=trainer_user,
        recorded_by=trainer_user,
    )
    assert Reminder.objects.filter(cancelled_at=None, certification__person=newbie).count() == 2

    thirty = Reminder.objects.get(certification=record, lead=timedelta(days=30))
    assert services.reminders_send_due(now=thirty.due_at - timedelta(minutes=1)) == 0
    assert services.reminders_send_due(now=thirty.due_at) == 1
    assert services.reminders_send_due(now=thirty.due_at + timedelta(days=1)) == 0
    deliver_outbox(now=thirty.due_at + timedelta(days=1))
    assert mail.outbox[-1].to == [newbie.email] and "expires on" in mail.outbox[-1].subject
    seven = Reminder.objects.get(certification=record, lead=timedelta(days=7))
    assert services.reminders_send_due(now=seven.due_at) == 1
    deliver_outbox(now=seven.due_at)
    assert len(mail.outbox) == 2


# -- the gate on the roster --------------------------------------------------------------------


def test_an_expired_certification_blocks_an_on_call_assignment_with_a_clear_message(manager_admin, team, lapsed):
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    data = {"rotation": team["rotation"].pk, "user": lapsed.pk, "reason": "holiday cover"}
    data |= _split("starts_at", start) | _split("ends_at", start + timedelta(hours=12))
    response = manager_admin.post(_url(OnCallOverride, "add"), data)
    assert response.status_code == 200
    error = " ".join(response.context["adminform"].form.errors["user"])
    expired_on = Certification.objects.get(person=lapsed, kind=annual()).expires_on
    assert "Lee Lapsed cannot take an on-call shift: Annual certification expired on" in error
    assert f"{expired_on:%d %b %Y}" in error
    assert "Override readiness" in error
    assert not OnCallOverride.objects.exists()

    # The manager overrides, but must say why.
    response = manager_admin.post(_url(OnCallOverride, "add"), data | {"readiness_override": "on"})
    assert "Give the justification" in " ".join(response.context["adminform"].form.errors["readiness_justification"])
    assert not OnCallOverride.objects.exists()
    response = manager_admin.post(
        _url(OnCallOverride, "add"),
        data | {"readiness_override": "on", "readiness_justification": "Renewal booked for Monday; no one else free"},
    )
    assert response.status_code == 302
    cover = OnCallOverride.objects.get()
    override = ReadinessOverride.objects.get()
    assert (override.person, override.granted_by, override.duty) == (lapsed, team["im"], "on_call")
    assert (override.valid_from, override.valid_until) == (cover.starts_at, cover.ends_at)
    assert "Annual certification expired" in override.problems[0]


def test_only_a_manager_may_override_the_gate(team, lapsed, su_client):
    # A superuser has every permission; a staff engineer with roster rights does not have the override.
    engineer = team["oncall2"]
    engineer.is_staff = True
    engineer.save()
    engineer.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_oncalloverride", "change_oncalloverride", "view_oncalloverride"])
    )
    client = Client()
    client.force_login(engineer)
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    data = {
        "rotation": team["rotation"].pk,
        "user": lapsed.pk,
        "reason": "swap",
        "readiness_override": "on",
        "readiness_justification": "I say so",
    }
    data |= _split("starts_at", start) | _split("ends_at", start + timedelta(hours=8))
    response = client.post(_url(OnCallOverride, "add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["readiness_override"] == [
        "Only a manager may override the readiness gate."
    ]
    assert not OnCallOverride.objects.exists() and not ReadinessOverride.objects.exists()


def _rotation_data(rotation: OnCallRotation, *, extra_user=None) -> dict:
    members = list(rotation.members.order_by("position"))
    total = len(members) + (1 if extra_user else 0)
    data = {
        "name": rotation.name,
        "role": rotation.role_id,
        "shift": rotation.shift,
        "handover_time": rotation.handover_time.strftime("%H:%M"),
        "timezone": rotation.timezone,
        "starts_on": rotation.starts_on.isoformat(),
        "active": "on",
        "members-TOTAL_FORMS": str(total),
        "members-INITIAL_FORMS": str(len(members)),
        "members-MIN_NUM_FORMS": "0",
        "members-MAX_NUM_FORMS": "1000",
        "overrides-TOTAL_FORMS": "0",
        "overrides-INITIAL_FORMS": "0",
        "overrides-MIN_NUM_FORMS": "0",
        "overrides-MAX_NUM_FORMS": "1000",
    }
    for i, member in enumerate(members):
        data |= {
            f"members-{i}-id": member.pk,
            f"members-{i}-rotation": rotation.pk,
            f"members-{i}-position": member.position,
            f"members-{i}-user": member.user_id,
        }
    if extra_user:
        i = len(members)
        data |= {f"members-{i}-rotation": rotation.pk, f"members-{i}-position": i, f"members-{i}-user": extra_user.pk}
    return data


def test_mentored_responses_unlock_solo_on_call(su_client, team, newbie):
    rotation = team["rotation"]
    url = _url(OnCallRotation, "change", rotation.pk)

    def add_newbie():
        return su_client.post(url, _rotation_data(rotation, extra_user=newbie))

    def member_errors(response) -> str:
        members = [f for f in response.context["inline_admin_formsets"] if f.formset.model is RotationMember][0]
        return " ".join(" ".join(e.get("user", [])) for e in members.formset.errors)

    response = add_newbie()
    assert response.status_code == 200
    assert "Mentoring not finished: 0 of 3 mentored incident responses." in member_errors(response)

    # Two drill responses alongside a certified mentor, then a real incident worked together.
    for _ in range(2):
        drill = services.drill_start(
            drill=services.drill_schedule(
                kind=DrillKind.objects.get(key="role-playing"),
                scheduled_start=timezone.now() + timedelta(days=1),
                facilitator=team["im"],
                created_by=su_client_user(),
                participants=[newbie, team["oncall2"]],
            ),
            user=su_client_user(),
        )
        services.drill_complete(
            drill=drill,
            user=su_client_user(),
            result="met",
            attendance=[services.AttendanceInput(participant_id=p.pk, attended=True) for p in drill.participants.all()],
        )
    assert selectors.mentoring_status(newbie).done == 2
    assert "2 of 3" in member_errors(add_newbie())

    incident = open_incident(reported_by=team["oncall3"], level=3)
    incident_services.incident_assign_commander(incident=incident, commander=team["oncall3"], user=team["oncall3"])
    incident_services.incident_acknowledge(incident=incident, user=newbie)
    incident_services.timeline_add_note(incident=incident, author=newbie, text="Restarted the dashboard pods")
    incident_services.incident_transition(incident=incident, name="start_investigation", user=newbie)
    tick_initial_assessment(incident, newbie)
    incident_services.incident_transition(incident=incident, name="contain", user=team["oncall3"])
    incident_services.incident_update(incident=incident, user=newbie, resolution_actions="Restarted")
    incident.refresh_from_db()
    incident_services.incident_transition(incident=incident, name="resolve", user=team["oncall3"])
    assert services.mentored_responses_scan() == 1
    assert services.mentored_responses_scan() == 0  # idempotent
    found = MentoredResponse.objects.get(mentee=newbie, incident=incident)
    assert (found.mentor, found.source) == (team["oncall3"], "incident")

    response = add_newbie()
    assert response.status_code == 302, member_errors(response)
    assert rotation.members.filter(user=newbie).exists()


def su_client_user():
    return get_user_model().objects.get(username="boss")


def test_a_certified_team_is_not_affected_and_the_switch_turns_the_gate_off(settings, team, lapsed):
    now = timezone.now()
    assert services.readiness_problems(user=team["oncall1"], at=now) == []
    assert services.readiness_problems(user=lapsed, at=now)
    # Not in a response-team role: not gated (unless being given one).
    outsider = UserFactory(username="outsider")
    assert services.readiness_problems(user=outsider, at=now) == []
    assert services.readiness_problems(user=outsider, at=now, roles=["On-Call Engineer"]) == [
        "No Incident response training on record.",
        "No Annual certification on record.",
        "Mentoring not finished: 0 of 3 mentored incident responses.",
        "The response procedures (version 1) are not acknowledged yet.",
    ]
    settings.TMT_ENFORCE_READINESS = False
    assert services.readiness_problems(user=lapsed, at=now) == []


def test_a_certification_running_out_during_a_cover_is_caught(team, newbie):
    services.mentoring_waive(person=newbie, user=_trainer(team), reason="Ex-SRE, ten years on call")
    record = Certification.objects.get(person=newbie, kind=annual())
    ends = datetime.combine(record.expires_on + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    problems = services.readiness_problems_between(
        user=newbie, start=timezone.now() + timedelta(hours=1), end=ends, duty="on_call"
    )
    assert len(problems) == 1 and "expired on" in problems[0] and "by the end" in problems[0]


def _trainer(team):
    user = UserFactory(username="trainer2")
    user.groups.add(Group.objects.get(name="Trainer"))
    return user


# -- the gate on incident command --------------------------------------------------------------


def test_an_uncertified_commander_is_refused_with_the_reason_and_a_manager_may_override(team, lapsed):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    with pytest.raises(services.ReadinessRefused) as caught:
        incident_services.incident_assign_commander(incident=incident, commander=lapsed, user=team["im"])
    assert "Lee Lapsed cannot take command of this incident: Annual certification expired on" in str(caught.value)
    incident.refresh_from_db()
    assert incident.commander is None

    with pytest.raises(ValidationError) as caught:
        services.readiness_override_grant(
            person=lapsed,
            duty="incident_commander",
            justification=" ",
            granted_by=team["im"],
            valid_until=timezone.now() + timedelta(hours=4),
            incident=incident,
        )
    assert "justification" in caught.value.message_dict
    services.readiness_override_grant(
        person=lapsed,
        duty="incident_commander",
        justification="Only database expert on shift",
        granted_by=team["im"],
        valid_until=timezone.now() + timedelta(hours=4),
        incident=incident,
    )
    incident_services.incident_assign_commander(incident=incident, commander=lapsed, user=team["im"])
    incident.refresh_from_db()
    assert incident.commander == lapsed
    # The override was for that incident only.
    other = open_incident(reported_by=team["oncall1"], level=3)
    with pytest.raises(services.ReadinessRefused):
        incident_services.incident_assign_commander(incident=other, commander=lapsed, user=lapsed)


def test_commanding_a_drill_incident_is_how_a_new_member_practises(trainer_user, team, newbie):
    drill = services.drill_start(
        drill=services.drill_schedule(
            kind=DrillKind.objects.get(key="role-playing"),
            scheduled_start=timezone.now() + timedelta(days=1),
            facilitator=trainer_user,
            created_by=trainer_user,
            participants=[newbie],
        ),
        user=trainer_user,
    )
    incident_services.incident_assign_commander(incident=drill.incident, commander=newbie, user=newbie)
    drill.incident.refresh_from_db()
    assert drill.incident.commander == newbie


def test_the_incident_page_shows_a_refusal_not_a_crash(client, team, lapsed):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    client.force_login(lapsed)
    response = client.post(f"/incidents/{incident.reference}/commander/", {"commander": lapsed.pk}, follow=True)
    # Back on the incident page, with the reason rather than a bare 403.
    assert response.status_code == 200
    assert "cannot take command" in response.content.decode()
    incident.refresh_from_db()
    assert incident.commander is None


# -- one readiness rule, wherever it is read --------------------------------------------------


def _responder(*, missing: str):
    """An on-call engineer with everything the gate asks for except `missing`."""
    person = UserFactory(username="rhea", first_name="Rhea", last_name="Responder")
    person.groups.add(Group.objects.get(name="On-Call Engineer"))
    issued = TODAY() - timedelta(days=400) if missing == "annual-expired" else None
    certify(person, issued_on=issued, mentoring_done=missing != "mentoring", acknowledged=missing != "procedures")
    if missing in ("incident-response-training", "annual-certification"):
        Certification.objects.filter(person=person, kind__key=missing).delete()
    return person


def _surfaces(person, team) -> dict[str, bool]:
    """Is `person` ready, as each place that says so answers."""
    from rest_framework.test import APIClient

    page = Client()
    page.force_login(person)
    banner = page.get("/drills/me/").content.decode()
    row = {r.person.pk: r for r in selectors.compliance_matrix().rows}[person.pk]
    incident = open_incident(reported_by=team["oncall1"])
    try:
        incident_services.incident_assign_commander(incident=incident, commander=person, user=team["im"])
        gate = True
    except services.ReadinessRefused:
        gate = False
    api = APIClient()
    api.force_authenticate(person)
    answer = api.post(
        "/api/v1/incidents/",
        {"title": "Execution latency", "severity": 3, "detection_method": "user_report"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    return {
        "banner": "Ready for on-call and incident command." in banner,
        "matrix": row.ready,
        "commander gate": gate,
        "api": answer.json()["commander"] == person.username,
    }


@pytest.mark.parametrize(
    "missing",
    ["incident-response-training", "annual-certification", "annual-expired", "mentoring", "procedures"],
)
def test_each_part_missing_makes_someone_not_ready_everywhere(missing, team):
    person = _responder(missing=missing)
    assert _surfaces(person, team) == dict.fromkeys(["banner", "matrix", "commander gate", "api"], False)


def test_with_every_part_someone_is_ready_everywhere(team):
    assert _surfaces(_responder(missing=""), team) == dict.fromkeys(["banner", "matrix", "commander gate", "api"], True)


def test_what_is_required_is_what_the_certification_kinds_say(team):
    """A kind the admin requires of another role only is asked of nobody else, anywhere."""
    annual().required_for.set([Group.objects.get(name="Risk Manager")])
    person = _responder(missing="annual-certification")
    assert _surfaces(person, team) == dict.fromkeys(["banner", "matrix", "commander gate", "api"], True)
    column = [k.pk for k in selectors.compliance_matrix().kinds].index(annual().pk)
    row = {r.person.pk: r for r in selectors.compliance_matrix().rows}[person.pk]
    assert row.cells[column].status == "n/a"
    # Given the role, it is asked of them.
    person.groups.add(Group.objects.get(name="Risk Manager"))
    assert _surfaces(person, team) == dict.fromkeys(["banner", "matrix", "commander gate", "api"], False)


def test_acknowledging_an_older_version_is_not_enough(trainer_user, team):
    person = _responder(missing="")
    draft = services.procedure_draft_create(
        user=trainer_user, title="Procedures", body="v2 body", summary_of_changes="Two-person stop"
    )
    v2 = services.procedure_publish(document=draft, user=trainer_user)
    problems = services.readiness_problems(user=person, at=timezone.now(), duty="incident_commander")
    assert problems == ["The response procedures (version 2) are not acknowledged yet."]
    services.procedure_acknowledge(document=v2, user=person)
    assert services.readiness_problems(user=person, at=timezone.now(), duty="incident_commander") == []


def test_the_training_page_lists_only_what_is_required_of_the_person(client, team, trainer_user):
    # The trainer is in no response-team role: nothing is required, and the page does not say
    # "Ready" above certificates it calls missing.
    client.force_login(trainer_user)
    html = client.get("/drills/me/").content.decode()
    assert "Missing" not in html and "No certification is required." in html
    assert "Ready for on-call and incident command." not in html
    assert "Not in a response-team role" in html
    # A responder missing one sees it, and "Not ready".
    person = _responder(missing="annual-certification")
    client.force_login(person)
    html = client.get("/drills/me/").content.decode()
    assert "Not ready for on-call or command: No Annual certification on record." in html
    assert html.count("cert-missing") == 1


# -- "expiring within 30 days": the status and the reminders at their edges -------------------

LONDON = ZoneInfo("Europe/London")
# 11:00 in London on a summer day: the business day (London's) is the UTC day here.
SUMMER_MORNING = datetime(2026, 7, 14, 10, 0, tzinfo=UTC)


def _record_expiring(trainer_user, *, days_left: int, now: datetime) -> Certification:
    person = UserFactory(username=f"holder{days_left}")
    person.groups.add(Group.objects.get(name="On-Call Engineer"))
    today = selectors.business_day(now)
    return services.certification_record(
        person=person,
        kind=annual(),
        issued_on=today - timedelta(days=300),
        expires_on=today + timedelta(days=days_left),
        issued_by=trainer_user,
        recorded_by=trainer_user,
        now=now,
    )


def _at_opening(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=LONDON)


@pytest.mark.parametrize(
    ("days_left", "status", "reminders"),
    [
        # (lead in days, due): a lead already passed is reminded at once, the nearest one only.
        (31, "valid", {(30, "opening"), (7, "opening")}),
        (30, "expiring", {(30, "now"), (7, "opening")}),  # its 09:00 reminder time passed at 11:00
        (29, "expiring", {(30, "now"), (7, "opening")}),
        (16, "expiring", {(30, "now"), (7, "opening")}),
        (8, "expiring", {(30, "now"), (7, "opening")}),
        (7, "expiring", {(7, "now")}),
        (1, "expiring", {(7, "now")}),
        (0, "expired", set()),
    ],
)
def test_a_certificate_inside_the_30_days_is_expiring_and_its_holder_is_told_at_once(
    settings, trainer_user, team, days_left, status, reminders
):
    settings.TMT_BUSINESS_TIME_ZONE = "Europe/London"
    settings.TMT_BUSINESS_DAY_OPENS = time(9)
    record = _record_expiring(trainer_user, days_left=days_left, now=SUMMER_MORNING)
    row = {r.person.pk: r for r in selectors.compliance_matrix(at=SUMMER_MORNING).rows}[record.person_id]
    column = [k.pk for k in selectors.compliance_matrix(at=SUMMER_MORNING).kinds].index(annual().pk)
    assert row.cells[column].status == status

    def when(lead: int, due: datetime) -> str:
        if due == SUMMER_MORNING:
            return "now"
        assert due == _at_opening(record.expires_on - timedelta(days=lead)), due
        return "opening"

    pending = Reminder.objects.filter(certification=record, cancelled_at=None)
    assert {(r.lead.days, when(r.lead.days, r.due_at)) for r in pending} == reminders
    told_now = any(due == "now" for _, due in reminders)
    assert services.reminders_send_due(now=SUMMER_MORNING) == int(told_now)


def test_the_30_days_are_counted_in_business_days_of_london_at_midnight(settings, trainer_user, team):
    """At 23:30 UTC in summer it is already tomorrow in London: a certificate expiring 31 UTC days
    ahead has 30 London days left, so it is expiring, and its 30-day reminder is due at 09:00."""
    settings.TMT_BUSINESS_TIME_ZONE = "Europe/London"
    settings.TMT_BUSINESS_DAY_OPENS = time(9)
    before_midnight = datetime(2026, 7, 14, 22, 30, tzinfo=UTC)  # 23:30 on 14 July in London
    after_midnight = datetime(2026, 7, 14, 23, 30, tzinfo=UTC)  # 00:30 on 15 July in London
    record = _record_expiring(trainer_user, days_left=31, now=before_midnight)
    assert record.expires_on == date(2026, 8, 14)

    def status(at: datetime) -> str:
        matrix = selectors.compliance_matrix(at=at)
        row = {r.person.pk: r for r in matrix.rows}[record.person_id]
        return row.cells[[k.pk for k in matrix.kinds].index(annual().pk)].status

    assert (status(before_midnight), status(after_midnight)) == ("valid", "expiring")
    thirty = Reminder.objects.get(certification=record, lead=timedelta(days=30))
    assert thirty.due_at == datetime(2026, 7, 15, 9, 0, tzinfo=LONDON)
    assert services.reminders_send_due(now=after_midnight) == 0
    assert services.reminders_send_due(now=thirty.due_at) == 1
