"""The on-call journey's rough edges, smoothed: resolving with its actions in one step, containing
straight from acknowledged, no "Take command" for the commander, clocks that read right, dates as
ISO 8601, and the header's quick search."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import Incident, State, TimelineEntry
from incidents.selectors import Clock
from tests.factories import UserFactory, open_incident, tick_initial_assessment

pytestmark = pytest.mark.django_db


def _contained(user, **kwargs) -> Incident:
    incident = open_incident(reported_by=user, **kwargs)
    services.incident_transition(incident=incident, name="acknowledge", user=user)
    tick_initial_assessment(incident, user)
    services.incident_transition(incident=incident, name="contain", user=user)
    incident.refresh_from_db()
    return incident


def _entries(incident: Incident) -> int:
    return TimelineEntry.objects.filter(incident=incident).count()


# -- resolve with the resolution actions, in one step -----------------------------------------------


def test_the_page_offers_the_resolution_actions_field_at_resolve(engineer_client, engineer):
    incident = _contained(engineer)
    html = engineer_client.get(incident.get_absolute_url()).content.decode()
    assert 'data-testid="resolve-form"' in html
    assert 'name="resolution_actions"' in html
    assert "Record the resolution actions first" not in html  # the field is right there instead


def test_resolving_inline_records_the_actions_and_resolves(engineer_client, engineer):
    incident = _contained(engineer)
    response = engineer_client.post(
        reverse("incidents:resolve", args=[incident.reference]),
        {"resolution_actions": "  Failed over to the standby feed.  ", "expected_state": "contained"},
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.state == State.RESOLVED
    assert incident.resolution_actions == "Failed over to the standby feed."
    last_two = list(incident.timeline.order_by("-id").values_list("action", "to_state")[:2])
    assert last_two[0] == ("Resolve: Contained → Resolved", "resolved")
    assert last_two[1] == ("Updated resolution actions", "")


@pytest.mark.parametrize("text", ["", "   \n "])
def test_resolving_inline_with_empty_actions_is_a_field_error_and_writes_nothing(engineer_client, engineer, text):
    incident = _contained(engineer)
    before = _entries(incident)
    response = engineer_client.post(
        reverse("incidents:resolve", args=[incident.reference]),
        {"resolution_actions": text, "expected_state": "contained"},
    )
    assert response.status_code == 400
    assert response.context["resolve_form"].errors["resolution_actions"] == [services.RESOLUTION_ACTIONS_REQUIRED]
    assert services.RESOLUTION_ACTIONS_REQUIRED in response.content.decode()
    incident.refresh_from_db()
    assert incident.state == State.CONTAINED and incident.resolution_actions == ""
    assert _entries(incident) == before


def test_a_refused_resolve_leaves_the_actions_unrecorded(engineer):
    incident = _contained(engineer)
    # Someone un-ticks an assessment item: resolving is refused, and the actions with it.
    item = incident.checklist_items.filter(gates_containment=True).first()
    services.checklist_item_set_done(item=item, user=engineer, done=False)
    before = _entries(incident)
    with pytest.raises(services.TransitionRefusedError):
        services.incident_resolve(incident=incident, user=engineer, resolution_actions="Restarted it")
    incident.refresh_from_db()
    assert incident.state == State.CONTAINED and incident.resolution_actions == ""
    assert _entries(incident) == before


def test_resolving_inline_is_refused_for_a_stale_page_or_without_the_right(engineer):
    incident = _contained(engineer)
    before = _entries(incident)
    with pytest.raises(services.IncidentChangedError):
        services.incident_resolve(
            incident=incident, user=engineer, resolution_actions="Restarted it", expected_state="investigating"
        )
    with pytest.raises(PermissionDenied):
        services.incident_resolve(incident=incident, user=UserFactory(), resolution_actions="Restarted it")
    incident.refresh_from_db()
    assert incident.state == State.CONTAINED and _entries(incident) == before


def test_resolving_inline_an_incident_not_yet_contained_is_refused(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    before = _entries(incident)
    response = engineer_client.post(
        reverse("incidents:resolve", args=[incident.reference]),
        {"resolution_actions": "Restarted it", "expected_state": "acknowledged"},
        follow=True,
    )
    assert "not possible while the incident is acknowledged" in response.content.decode()
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.resolution_actions == ""
    assert _entries(incident) == before


# -- contained straight from acknowledged ------------------------------------------------------------


def test_contain_straight_from_acknowledged_records_both_steps(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    tick_initial_assessment(incident, engineer)
    services.incident_transition(incident=incident, name="contain", user=engineer, expected_state="acknowledged")
    incident.refresh_from_db()
    assert incident.state == State.CONTAINED
    assert incident.investigating_at is not None and incident.contained_at is not None
    changes = list(incident.timeline.filter(kind="state_change").values_list("to_state", flat=True))
    assert changes == ["detected", "acknowledged", "investigating", "contained"]


def test_contain_from_acknowledged_still_needs_the_initial_assessment(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    before = _entries(incident)
    response = engineer_client.post(
        reverse("incidents:transition", args=[incident.reference]),
        {"name": "contain", "expected_state": "acknowledged"},
        follow=True,
    )
    assert "Complete the initial assessment checklist first." in response.content.decode()
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.investigating_at is None
    assert _entries(incident) == before  # no investigation started on the way either


def test_contain_is_not_offered_before_acknowledgement(engineer):
    incident = open_incident(reported_by=engineer)
    tick_initial_assessment(incident, engineer)
    offered = {t["name"] for t in services.incident_available_transitions(incident=incident, user=engineer)}
    assert "contain" not in offered
    with pytest.raises(services.TransitionRefusedError):
        services.incident_transition(incident=incident, name="contain", user=engineer)


# -- take command ----------------------------------------------------------------------------------


def test_the_commander_is_not_offered_take_command(engineer_client, engineer):
    incident = open_incident(reported_by=engineer, commander=engineer)
    html = engineer_client.get(incident.get_absolute_url()).content.decode()
    assert "Take command" not in html


def test_an_engineer_who_is_not_the_commander_is_offered_take_command(client, engineer):
    other = UserFactory(username="oncall2")
    other.groups.set(engineer.groups.all())
    incident = open_incident(reported_by=engineer, commander=engineer)
    client.force_login(other)
    assert "Take command" in client.get(incident.get_absolute_url()).content.decode()
    unassigned = open_incident(reported_by=engineer)
    assert "Take command" in client.get(unassigned.get_absolute_url()).content.decode()


# -- clocks that read right ------------------------------------------------------------------------


def _render_clock(clock: Clock) -> str:
    from django.template.loader import render_to_string

    return render_to_string("incidents/_clock.html", {"clock": clock}).strip()


def test_a_late_acknowledgement_reads_done_and_how_late():
    start = timezone.now() - timedelta(hours=1)
    late = Clock("Acknowledge", start, start + timedelta(minutes=15), start + timedelta(minutes=17, seconds=51))
    html = _render_clock(late)
    assert "done in 17m 51s, 2m 51s late" in html and "clock-missed" in html
    assert "missed in" not in html


def test_an_acknowledgement_at_the_due_moment_is_in_time():
    start = timezone.now() - timedelta(hours=1)
    html = _render_clock(Clock("Acknowledge", start, start + timedelta(minutes=15), start + timedelta(minutes=15)))
    assert "done in 15m 00s" in html and "late" not in html and "clock-met" in html
    due = start + timedelta(minutes=15)
    one_second_late = Clock("Acknowledge", start, due, due + timedelta(seconds=1))
    assert "0m 01s late" in _render_clock(one_second_late)


def test_a_running_clock_reads_due_in_and_an_expired_one_overdue_by():
    now = timezone.now()
    running = _render_clock(Clock("Acknowledge", now, now + timedelta(minutes=17, seconds=51, milliseconds=500), None))
    assert "due in 17m 5" in running and "clock-running" in running
    overdue = _render_clock(Clock("Acknowledge", now - timedelta(minutes=20), now - timedelta(minutes=3), None))
    assert "overdue by 3m 0" in overdue and "clock-overdue" in overdue


def test_the_dashboard_no_longer_says_missed_in(engineer_client, engineer):
    incident = open_incident(reported_by=engineer, level=4)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    html = engineer_client.get(reverse("incidents:dashboard")).content.decode()
    assert "missed in" not in html and "done in" in html


# -- pages due at open -----------------------------------------------------------------------------


def test_a_page_due_at_open_reads_sent_at_open_not_overdue(client, engineer):
    from incidents.escalation.models import Deadline
    from tests.factories import make_roster

    team = make_roster()
    incident = open_incident(reported_by=team["oncall1"], level=1)
    immediate = Deadline.objects.filter(incident=incident, due_at__lte=incident.detected_at, fired_at=None)
    assert immediate.exists(), "a Sev1 pages someone at open"
    client.force_login(team["oncall1"])
    html = client.get(reverse("incidents:escalation_panel", args=[incident.reference])).content.decode()
    assert "sent at open" in html
    pending = html.split('data-testid="pending-escalations"')[1].split("</table>")[0]
    assert "overdue" not in pending


def test_a_page_due_at_open_still_pending_after_the_grace_shows_overdue(engineer):
    from incidents.escalation.models import Deadline
    from incidents.escalation.selectors import IMMEDIATE_GRACE, _sent_at_once
    from tests.factories import make_roster

    make_roster()
    incident = open_incident(reported_by=engineer, level=1)
    deadline = Deadline.objects.filter(incident=incident, due_at__lte=incident.detected_at).first()
    armed = deadline.created_at
    assert _sent_at_once(deadline, incident, armed + IMMEDIATE_GRACE) == "at open"
    assert _sent_at_once(deadline, incident, armed + IMMEDIATE_GRACE + timedelta(seconds=1)) == ""
    later = Deadline.objects.filter(incident=incident, due_at__gt=deadline.created_at).first()
    assert _sent_at_once(later, incident, armed) == ""  # a later page is a clock, as before


# -- dates as ISO 8601 -----------------------------------------------------------------------------


def test_date_fields_are_iso_text_not_the_browsers_locale_picker(engineer_client, engineer):
    html = engineer_client.get(reverse("incidents:create")).content.decode()
    assert 'type="datetime-local"' not in html and 'type="date"' not in html
    assert 'placeholder="YYYY-MM-DD HH:MM"' in html


def test_a_note_time_in_iso_is_taken_and_a_us_date_is_a_field_error(engineer_client, engineer):
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(days=2))
    url = reverse("incidents:add_note", args=[incident.reference])
    when = timezone.localtime() - timedelta(hours=1)
    response = engineer_client.post(url, {"text": "Feed back", "occurred_at": when.strftime("%Y-%m-%d %H:%M")})
    assert response.status_code == 302
    note = incident.timeline.get(kind="note")
    assert note.occurred_at.replace(second=0, microsecond=0) == when.replace(second=0, microsecond=0)
    before = _entries(incident)
    response = engineer_client.post(url, {"text": "US date", "occurred_at": when.strftime("%m/%d/%Y %I:%M %p")})
    assert response.status_code == 400
    assert response.context["note_form"].errors["occurred_at"]
    assert _entries(incident) == before


def test_dates_on_pages_are_iso(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    html = engineer_client.get(incident.get_absolute_url()).content.decode()
    assert timezone.localtime(incident.detected_at).strftime("%Y-%m-%d %H:%M:%S") in html


# -- quick search ------------------------------------------------------------------------------------


def test_quick_search_jumps_to_an_exact_reference(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    response = engineer_client.get(reverse("incidents:search"), {"q": f"  {incident.reference.lower()} "})
    assert response.status_code == 302 and response["Location"] == incident.get_absolute_url()


def test_quick_search_otherwise_searches_the_list(engineer_client, engineer):
    incident = open_incident(reported_by=engineer, title="Risk engine rejects every order")
    response = engineer_client.get(reverse("incidents:search"), {"q": "rejects every"})
    assert response.status_code == 302 and response["Location"] == reverse("incidents:list") + "?q=rejects+every"
    listing = engineer_client.get(response["Location"]).content.decode()
    assert incident.reference in listing
    # Part of a reference is a search too, not a jump.
    partial = engineer_client.get(reverse("incidents:search"), {"q": incident.reference[:-1]})
    assert partial["Location"].startswith(reverse("incidents:list") + "?q=")


@pytest.mark.parametrize("q", ["", "x" * 5000, "\x00", "<script>"])
def test_quick_search_odd_input_never_fails(engineer_client, q):
    response = engineer_client.get(reverse("incidents:search"), {"q": q}, follow=True)
    assert response.status_code == 200


def test_quick_search_needs_login_and_the_right(client):
    response = client.get(reverse("incidents:search"), {"q": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(UserFactory())
    assert client.get(reverse("incidents:search"), {"q": "x"}).status_code == 403


def test_every_page_has_the_quick_search_and_the_shortcuts_help(engineer_client):
    html = engineer_client.get(reverse("incidents:list")).content.decode()
    assert 'data-testid="quick-search"' in html and 'id="shortcuts-help"' in html


# -- the page's actions follow the assessment --------------------------------------------------------


def test_completing_the_assessment_reloads_the_page_so_contained_is_offered(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    gating = list(incident.checklist_items.filter(gates_containment=True).order_by("id"))
    assert len(gating) > 1

    def tick(item):
        url = reverse("incidents:checklist_toggle", args=[incident.reference, item.pk])
        return engineer_client.post(url, {"done": "1"}, HTTP_HX_REQUEST="true")

    for item in gating[:-1]:
        assert "HX-Refresh" not in tick(item)  # still incomplete: only the item is swapped
    assert tick(gating[-1])["HX-Refresh"] == "true"
    url = reverse("incidents:checklist_toggle", args=[incident.reference, gating[0].pk])
    untick = engineer_client.post(url, {"done": "0"}, HTTP_HX_REQUEST="true")
    assert untick["HX-Refresh"] == "true"  # incomplete again
