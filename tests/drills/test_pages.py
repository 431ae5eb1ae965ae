"""The drills and training pages: logins, permissions, bad input and query counts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from drills import services
from drills.models import (
    Certification,
    CertificationKind,
    Drill,
    DrillFinding,
    DrillKind,
    ProcedureAcknowledgement,
    ProcedureDocument,
)
from reports.models import ActionItem
from tests.factories import UserFactory, certify

from .conftest import schedule

pytestmark = pytest.mark.django_db


def _local(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


# -- logins and permissions --------------------------------------------------------------------


def test_every_page_needs_a_login(client, trainer_user, team):
    drill = schedule(trainer_user)
    for url in [
        "/drills/",
        "/drills/new/",
        f"/drills/{drill.pk}/",
        f"/drills/{drill.pk}/complete/",
        "/drills/me/",
        "/drills/training/",
        "/drills/training/compliance.csv",
        f"/drills/training/people/{team['oncall1'].pk}/",
        "/drills/training/certifications/new/",
        "/drills/training/mentoring/new/",
        "/drills/procedures/",
        "/drills/procedures/1/",
        "/drills/readiness/overrides/",
        "/drills/calendar/programme.ics",
    ]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_trainers_manage_and_everyone_sees_their_own(client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]])
    engineer = team["oncall1"]
    client.force_login(engineer)
    for url in [
        "/drills/new/",
        "/drills/training/",
        "/drills/training/compliance.csv",
        f"/drills/training/people/{team['oncall2'].pk}/",
        "/drills/training/certifications/new/",
        f"/drills/{drill.pk}/complete/",
        "/drills/procedures/new/",
    ]:
        assert client.get(url).status_code == 403, url
    assert client.post(f"/drills/{drill.pk}/start/").status_code == 403
    assert client.post(f"/drills/{drill.pk}/participants/", {"user": engineer.pk, "role": "on_call"}).status_code == 403
    # The team sees the programme and the drill; everyone sees their own training record.
    assert client.get("/drills/").status_code == 200
    assert client.get(f"/drills/{drill.pk}/").status_code == 200
    me = client.get("/drills/me/")
    assert me.status_code == 200 and me.context["person"] == engineer
    # Someone outside the team sees only their own record.
    outsider = UserFactory(username="visitor")
    client.force_login(outsider)
    assert client.get("/drills/").status_code == 403
    assert client.get(f"/drills/{drill.pk}/").status_code == 403
    assert client.get("/drills/me/").status_code == 200
    # A manager may record overrides; a trainer may only read them.
    client.force_login(trainer_user)
    page = client.get("/drills/readiness/overrides/")
    assert page.status_code == 200 and page.context["form"] is None
    assert client.post("/drills/readiness/overrides/", {}).status_code == 403


def test_nav_shows_drills_and_training(client, trainer_user, team):
    client.force_login(trainer_user)
    html = client.get("/drills/me/").content.decode()
    assert 'href="/drills/">Drills</a>' in html and 'href="/drills/training/">Training</a>' in html
    client.force_login(UserFactory(username="visitor"))
    html = client.get("/drills/me/").content.decode()
    assert 'href="/drills/">Drills</a>' not in html and 'href="/drills/me/">Training</a>' in html


# -- bad input: field errors, status 400, nothing saved ------------------------------------------


def test_schedule_form_bad_input_is_a_field_error_never_a_500(trainer_client, trainer_user, team):
    dr = DrillKind.objects.get(key="disaster-recovery")
    base = {
        "kind": dr.pk,
        "facilitator": trainer_user.pk,
        "scheduled_start": _local(timezone.now() + timedelta(days=3)),
    }
    cases = [
        (
            {"scheduled_start": _local(timezone.now() - timedelta(days=1))},
            "scheduled_start",
            "must start in the future",
        ),
        ({"participants": [team["oncall1"].pk, team["oncall1"].pk]}, "participants", "is listed twice"),
        ({"kind": "999999"}, "kind", "Choose one of the drill kinds."),
        ({"kind": "x' OR 1=1"}, "kind", "Choose one of the drill kinds."),
        ({"scheduled_start": "yesterday-ish"}, "scheduled_start", "Enter a valid date/time."),
        ({"duration_minutes": "-5"}, "duration_minutes", "greater than or equal to 5"),
        ({"duration_minutes": "99999999"}, "duration_minutes", "less than or equal to"),
        ({"facilitator": ""}, "facilitator", "This field is required."),
    ]
    for change, field, message in cases:
        response = trainer_client.post("/drills/new/", base | change)
        assert response.status_code == 400, change
        assert message in " ".join(response.context["form"].errors[field]), (change, response.context["form"].errors)
    assert not Drill.objects.exists()

    response = trainer_client.post("/drills/new/", base | {"participants": [team["oncall1"].pk, team["oncall2"].pk]})
    assert response.status_code == 302
    drill = Drill.objects.get()
    assert response["Location"] == f"/drills/{drill.pk}/"
    assert drill.participants.count() == 2 and drill.scenario == dr.default_scenario


def test_adding_a_participant_twice_on_the_page_is_a_field_error(trainer_client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]])
    response = trainer_client.post(f"/drills/{drill.pk}/participants/", {"user": team["oncall2"].pk, "role": "mentor"})
    assert response.status_code == 400
    assert response.context["participant_form"].errors["user"] == [
        f"{team['oncall2'].get_full_name()} is already a participant."
    ]
    assert drill.participants.count() == 1
    for data in ({"user": "abc", "role": "on_call"}, {"user": team["oncall3"].pk, "role": "king"}, {}):
        assert trainer_client.post(f"/drills/{drill.pk}/participants/", data).status_code == 400
    assert (
        trainer_client.post(
            f"/drills/{drill.pk}/participants/", {"user": team["oncall3"].pk, "role": "scribe"}
        ).status_code
        == 302
    )
    assert drill.participants.count() == 2


def test_certification_form_refuses_an_expiry_before_the_issue_date(trainer_client, team):
    kind = CertificationKind.objects.get(key="annual-certification")
    before = Certification.objects.count()
    response = trainer_client.post(
        "/drills/training/certifications/new/",
        {
            "person": team["oncall2"].pk,
            "kind": kind.pk,
            "issued_on": "2026-03-10",
            "expires_on": "2026-03-01",
            "issued_by": team["im"].pk,
        },
    )
    assert response.status_code == 400
    assert "must be after the issue date" in " ".join(response.context["form"].errors["expires_on"])
    for bad in ({"issued_on": "31/02/2026"}, {"issued_on": "2999-01-01"}, {"kind": "0"}, {"person": ""}):
        data = {
            "person": team["oncall2"].pk,
            "kind": kind.pk,
            "issued_on": "2026-01-10",
            "issued_by": team["im"].pk,
        } | bad
        assert trainer_client.post("/drills/training/certifications/new/", data).status_code == 400, bad
    assert Certification.objects.count() == before


def test_completing_on_the_page_turns_a_finding_into_an_action_item(trainer_client, trainer_user, team):
    drill = services.drill_start(drill=schedule(trainer_user, participants=[team["oncall2"]]), user=trainer_user)
    participant = drill.participants.get()
    targets = list(drill.targets.all())
    due = (timezone.localdate() + timedelta(days=10)).isoformat()
    data = {
        "result": "met",
        "outcome_summary": "",
        "went_well": "Fast restore",
        "could_improve": "",
        "attendance-TOTAL_FORMS": "1",
        "attendance-INITIAL_FORMS": "1",
        "attendance-0-participant": participant.pk,
        "attendance-0-attended": "on",
        "attendance-0-role": "incident_commander",
        "targets-TOTAL_FORMS": str(len(targets)),
        "targets-INITIAL_FORMS": str(len(targets)),
        "findings-TOTAL_FORMS": "2",
        "findings-INITIAL_FORMS": "0",
        "findings-0-title": "Backup host credentials expired",
        "findings-0-owner": team["oncall2"].pk,
        "findings-0-due_date": "2001-01-01",
        "findings-0-kind": "immediate",
        "findings-1-title": "",
        "findings-1-kind": "immediate",
    }
    for i, t in enumerate(targets):
        data |= {f"targets-{i}-target": t.pk, f"targets-{i}-actual_minutes": "12.5"}
    response = trainer_client.post(f"/drills/{drill.pk}/complete/", data)
    assert response.status_code == 400
    assert response.context["findings"].forms[0].errors["due_date"] == ["The due date cannot be in the past."]
    assert Drill.objects.get(pk=drill.pk).state == "in_progress" and not ActionItem.objects.exists()

    garbage = trainer_client.post(
        f"/drills/{drill.pk}/complete/", data | {"targets-0-actual_minutes": "lots", "result": "great"}
    )
    assert garbage.status_code == 400

    response = trainer_client.post(f"/drills/{drill.pk}/complete/", data | {"findings-0-due_date": due})
    assert response.status_code == 302
    item = DrillFinding.objects.get(drill=drill).action_item
    assert item.title == "Backup host credentials expired" and item.owner == team["oncall2"]
    page = trainer_client.get(f"/drills/{drill.pk}/").content.decode()
    assert "Backup host credentials expired" in page and 'data-testid="action-item-state">Open<' in page
    assert drill.targets.filter(actual=timedelta(minutes=12, seconds=30)).count() == len(targets)


# -- the trainer's dashboard and the CSV ---------------------------------------------------------


def _team_of_statuses(team):
    """oncall1..3 and friends are certified; add one expiring, one expired, one missing."""
    engineers = Group.objects.get(name="On-Call Engineer")
    kind = CertificationKind.objects.get(key="annual-certification")
    today = timezone.localdate()
    people = {}
    for name, issued in [
        ("expiring", today - timedelta(days=350)),
        ("expired", today - timedelta(days=400)),
        ("missing", None),
    ]:
        user = UserFactory(username=name, first_name=name.title(), last_name="Tester")
        user.groups.add(engineers)
        if issued:
            certify(user, issued_on=issued)
        people[name] = user
    return kind, people


def test_the_compliance_matrix_shows_valid_expiring_expired_and_missing(trainer_client, team):
    kind, people = _team_of_statuses(team)
    response = trainer_client.get("/drills/training/")
    assert response.status_code == 200
    matrix = response.context["matrix"]
    rows = {r.person.username: r for r in matrix.rows}
    column = [k.pk for k in matrix.kinds].index(kind.pk)
    assert rows["oncall1"].cells[column].status == "valid"
    assert rows["expiring"].cells[column].status == "expiring"
    assert rows["expired"].cells[column].status == "expired"
    assert rows["missing"].cells[column].status == "missing"
    assert not rows["expired"].ready and not rows["missing"].ready
    assert rows["oncall1"].ready and rows["expiring"].ready
    # Managers and executives are not in the response team by default; the trainer is not either.
    assert "cto" not in rows and "coach" not in rows
    # Procedures v1 was seeded; only the one never certified has not acknowledged it.
    assert {r.person.username for r in matrix.not_acknowledged} == {"missing"}


def test_the_compliance_csv_export(trainer_client, team):
    _team_of_statuses(team)
    response = trainer_client.get("/drills/training/compliance.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_user = {r["Username"]: r for r in rows}
    assert by_user["expired"]["Annual certification"] == "Expired"
    assert by_user["expiring"]["Annual certification"] == "Expiring"
    assert by_user["missing"]["Incident response training"] == "Missing"
    assert by_user["oncall1"]["Ready for on-call"] == "yes" and by_user["missing"]["Ready for on-call"] == "no"
    assert by_user["oncall1"]["Procedures v1 acknowledged"] == "yes"
    assert by_user["missing"]["Procedures v1 acknowledged"] == "no"


def test_csv_cells_cannot_smuggle_a_formula(trainer_client, team):
    user = UserFactory(username="formula", first_name='=HYPERLINK("http://evil")', last_name="x")
    user.groups.add(Group.objects.get(name="On-Call Engineer"))
    text = trainer_client.get("/drills/training/compliance.csv").content.decode()
    assert "'=HYPERLINK" in text


def test_dashboard_and_drill_pages_run_a_constant_number_of_queries(
    trainer_client, trainer_user, team, django_assert_max_num_queries
):
    drill = schedule(trainer_user, participants=[team["oncall2"]])
    with django_assert_max_num_queries(40) as few_dashboard:
        assert trainer_client.get("/drills/training/").status_code == 200
    with django_assert_max_num_queries(40) as few_detail:
        assert trainer_client.get(f"/drills/{drill.pk}/").status_code == 200
    with django_assert_max_num_queries(40) as few_me:
        assert trainer_client.get(f"/drills/training/people/{team['oncall2'].pk}/").status_code == 200

    engineers = Group.objects.get(name="On-Call Engineer")
    for i in range(12):
        user = UserFactory(username=f"extra{i}")
        user.groups.add(engineers)
        certify(user)
        services.drill_participant_add(drill=drill, user=trainer_user, participant=user, role="observer")
    for i in range(5):
        schedule(trainer_user, key="role-playing", days=10 + i, participants=[team["oncall2"]])
    with django_assert_max_num_queries(len(few_dashboard.captured_queries)):
        assert trainer_client.get("/drills/training/").status_code == 200
    with django_assert_max_num_queries(len(few_detail.captured_queries)):
        assert trainer_client.get(f"/drills/{drill.pk}/").status_code == 200
    with django_assert_max_num_queries(len(few_me.captured_queries)):
        assert trainer_client.get(f"/drills/training/people/{team['oncall2'].pk}/").status_code == 200


# -- procedures --------------------------------------------------------------------------------


def test_a_new_procedure_version_must_be_acknowledged_by_the_team(trainer_client, trainer_user, team):
    v1 = ProcedureDocument.objects.get(version=1)
    assert v1.is_published and "## Training and Drills" in v1.body
    response = trainer_client.post(
        "/drills/procedures/new/",
        {
            "title": v1.title,
            "summary_of_changes": "Emergency stop now verified by two people",
            "body": v1.body + "\n## Two-person verification\n- A second engineer confirms the stop\n",
        },
    )
    assert response.status_code == 302
    v2 = ProcedureDocument.objects.get(version=2)
    assert v2.published_at is None
    client = Client()
    client.force_login(team["oncall1"])
    assert client.get("/drills/procedures/2/").status_code == 404  # drafts are the trainers'
    assert trainer_client.post("/drills/procedures/2/publish/").status_code == 302

    matrix = trainer_client.get("/drills/training/").context["matrix"]
    assert matrix.procedure == ProcedureDocument.objects.get(version=2)
    assert "oncall1" in {r.person.username for r in matrix.not_acknowledged}

    page = client.get("/drills/procedures/2/")
    html = page.content.decode()
    assert "<h3>Two-person verification</h3>" in html and "I have read version 2" in html
    assert client.post("/drills/procedures/2/acknowledge/").status_code == 302
    assert client.post("/drills/procedures/2/acknowledge/").status_code == 302  # idempotent
    assert ProcedureAcknowledgement.objects.filter(document__version=2, person=team["oncall1"]).count() == 1
    matrix = trainer_client.get("/drills/training/").context["matrix"]
    assert "oncall1" not in {r.person.username for r in matrix.not_acknowledged}


def test_procedure_text_is_escaped(trainer_client):
    trainer_client.post(
        "/drills/procedures/new/",
        {"title": "v2", "summary_of_changes": "x", "body": "# Title\n<script>alert(1)</script> **bold**\n"},
    )
    html = trainer_client.get("/drills/procedures/2/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html and "<strong>bold</strong>" in html


def test_the_override_page_records_a_managers_justification(client, team):
    lapsed = UserFactory(username="lapsed2")
    lapsed.groups.add(Group.objects.get(name="On-Call Engineer"))
    client.force_login(team["im"])
    until = timezone.localtime() + timedelta(hours=6)
    bad = client.post(
        "/drills/readiness/overrides/",
        {"person": lapsed.pk, "duty": "on_call", "justification": "", "valid_until": until.strftime("%Y-%m-%dT%H:%M")},
    )
    assert bad.status_code == 400 and "justification" in bad.context["form"].errors
    too_long = client.post(
        "/drills/readiness/overrides/",
        {
            "person": lapsed.pk,
            "duty": "on_call",
            "justification": "cover",
            "valid_until": (until + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert too_long.status_code == 400 and "at most 31 days" in " ".join(too_long.context["form"].errors["valid_until"])
    ok = client.post(
        "/drills/readiness/overrides/",
        {
            "person": lapsed.pk,
            "duty": "on_call",
            "justification": "Bank holiday cover",
            "valid_until": until.strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert ok.status_code == 302
    assert services.readiness_problems(user=lapsed, at=timezone.now(), duty="on_call") == []
    assert services.readiness_problems(user=lapsed, at=timezone.now(), duty="incident_commander")


def test_the_other_forms_answer_bad_input_with_errors_never_a_500(trainer_client, trainer_user, team, newbie):
    drill = schedule(trainer_user, participants=[team["oncall2"], team["oncall3"]])
    # Reschedule: bad, then good.
    edit = {
        "title": "",
        "scheduled_start": "nonsense",
        "duration_minutes": "0",
        "facilitator": trainer_user.pk,
        "scenario": "s",
        "objectives": "o",
    }
    assert trainer_client.post(f"/drills/{drill.pk}/edit/", edit).status_code == 400
    later = timezone.localtime(drill.scheduled_start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = trainer_client.post(
        f"/drills/{drill.pk}/edit/", edit | {"title": "Moved", "scheduled_start": later, "duration_minutes": "90"}
    )
    assert response.status_code == 302
    drill.refresh_from_db()
    assert drill.title == "Moved" and drill.duration == timedelta(minutes=90)
    # Remove a participant; a participant of another drill is a 404.
    other = schedule(trainer_user, key="role-playing", participants=[team["oncall1"]])
    foreign = other.participants.get()
    assert trainer_client.post(f"/drills/{drill.pk}/participants/{foreign.pk}/remove/").status_code == 404
    mine = drill.participants.get(user=team["oncall3"])
    assert trainer_client.post(f"/drills/{drill.pk}/participants/{mine.pk}/remove/").status_code == 302
    assert drill.participants.count() == 1
    # Cancel without a reason, then with one.
    assert trainer_client.post(f"/drills/{other.pk}/cancel/", {"reason": ""}).status_code == 400
    assert trainer_client.post(f"/drills/{other.pk}/cancel/", {"reason": "Office move"}).status_code == 302
    assert trainer_client.post(f"/drills/{other.pk}/start/").status_code == 302  # refused with a message
    assert Drill.objects.get(pk=other.pk).state == "cancelled"
    # A finding on a planned drill is refused; after the start it is an action item.
    finding = {
        "title": "Pager app crashed",
        "owner": team["oncall2"].pk,
        "kind": "immediate",
        "due_date": (timezone.localdate() + timedelta(days=3)).isoformat(),
    }
    assert trainer_client.post(f"/drills/{drill.pk}/findings/", finding).status_code == 400
    services.drill_start(drill=drill, user=trainer_user)
    assert trainer_client.post(f"/drills/{drill.pk}/findings/", finding | {"owner": "x"}).status_code == 400
    assert trainer_client.post(f"/drills/{drill.pk}/findings/", finding).status_code == 302
    assert ActionItem.objects.filter(title="Pager app crashed").exists()
    # Mentored responses: unknown incident, the mentee as their own mentor.
    bad = trainer_client.post(
        "/drills/training/mentoring/new/",
        {"mentee": newbie.pk, "mentor": newbie.pk, "incident": "TMT-INC-1999-01-01-001"},
    )
    assert bad.status_code == 400 and "There is no incident" in " ".join(bad.context["form"].errors["incident"])
    incident = drill.incident
    bad = trainer_client.post(
        "/drills/training/mentoring/new/", {"mentee": newbie.pk, "mentor": newbie.pk, "incident": incident.reference}
    )
    assert bad.status_code == 400 and "someone other" in " ".join(bad.context["form"].errors["mentor"])
    # Waiver and profile.
    assert (
        trainer_client.post(f"/drills/training/people/{newbie.pk}/waive-mentoring/", {"reason": ""}).status_code == 302
    )
    assert (
        trainer_client.post(
            f"/drills/training/people/{newbie.pk}/profile/", {"mentored_responses_required": "-3"}
        ).status_code
        == 302
    )
    assert (
        trainer_client.post(
            f"/drills/training/people/{newbie.pk}/profile/", {"mentored_responses_required": "5"}
        ).status_code
        == 302
    )
    assert services.selectors.mentoring_status(newbie).required == 5
    # Unknown things are 404s.
    for url in [
        "/drills/999999/",
        "/drills/training/people/999999/",
        "/drills/procedures/999/",
        "/drills/training/certifications/999999/evidence/",
    ]:
        assert trainer_client.get(url).status_code == 404, url


def test_certification_evidence_is_for_the_holder_and_trainers(client, trainer_client, trainer_user, team, newbie):
    from django.core.files.uploadedfile import SimpleUploadedFile

    record = services.certification_record(
        person=newbie,
        kind=CertificationKind.objects.get(key="annual-certification"),
        issued_on=timezone.localdate(),
        issued_by=trainer_user,
        recorded_by=trainer_user,
        evidence=SimpleUploadedFile("cert.pdf", b"%PDF-1.4 ok", "application/pdf"),
    )
    url = f"/drills/training/certifications/{record.pk}/evidence/"
    assert trainer_client.get(url).status_code == 200
    other = Client()
    other.force_login(team["oncall1"])
    assert other.get(url).status_code == 403
    other.force_login(newbie)
    response = other.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"%PDF")


def test_my_training_page_shows_the_calendar_links_once_and_offers_new_ones(client, team):
    client.force_login(team["oncall2"])
    assert client.get("/drills/me/").context["token"] is None

    made = client.post("/drills/calendar/token/")
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    feed_mine, feed_programme = made.context["feed_mine"], made.context["feed_programme"]
    assert "/drills/calendar/feed/" in feed_mine and "/drills/calendar/feed/" in feed_programme
    assert "it will not be shown again" in made.content.decode()
    assert client.get(feed_mine).status_code == 200 and client.get(feed_programme).status_code == 200

    # Afterwards the page says the links exist, and how to get new ones, but not what they are.
    later = client.get("/drills/me/")
    secret = feed_mine.split("/feed/")[1].split("/")[0]
    assert later.context["feed_mine"] == "" and secret not in later.content.decode()
    assert "Make new links (old ones stop working)" in later.content.decode()
    assert f"{secret[:8]}…" in later.content.decode()

    rotated = client.post("/drills/calendar/token/")
    assert rotated.context["feed_mine"] != feed_mine
    assert "the old ones no longer work" in rotated.content.decode()
    assert client.get(feed_mine).status_code == 404
    assert client.get(rotated.context["feed_mine"]).status_code == 200
    assert client.get("/drills/calendar/token/").status_code == 405
