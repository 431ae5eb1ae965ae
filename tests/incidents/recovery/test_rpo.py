"""Each data class's RPO against the age of its systems' newest verified backup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.models import OPEN_STATES, Incident, RecoveryPointObjective, TimelineEntry
from incidents.recovery import selectors, services
from incidents.recovery.models import BackupArtefact, BackupFolder, BackupRun, RpoBreach
from tests.factories import system

pytestmark = pytest.mark.django_db

FINGERPRINT_PREFIX = "recovery:rpo:"


@pytest.fixture
def config_source():
    """The dashboard's configuration (seeded class: Configuration data, RPO 15 min)."""
    return BackupFolder.objects.create(
        name="Dashboard config", kind=BackupFolder.Kind.CONFIGURATION, path="/etc/tmt", system=system("dashboard")
    )


def _verified(source: BackupFolder, *, captured_at) -> BackupArtefact:
    run = BackupRun.objects.create(trigger=BackupRun.Trigger.SCHEDULED, state=BackupRun.State.VERIFIED)
    return BackupArtefact.objects.create(
        run=run,
        kind=BackupArtefact.Kind.FOLDER,
        source_name=source.name,
        folder=source,
        system=source.system,
        state=BackupArtefact.State.VERIFIED,
        captured_at=captured_at,
    )


def _rpo_incidents() -> list[Incident]:
    return list(Incident.objects.filter(alert_fingerprint__startswith=FINGERPRINT_PREFIX))


@pytest.mark.parametrize(
    ("age", "breached"),
    [
        (timedelta(minutes=15) - timedelta(seconds=1), False),
        (timedelta(minutes=15), False),  # at the RPO: at most 15 minutes lost, within it
        (timedelta(minutes=15) + timedelta(seconds=1), True),
    ],
)
def test_an_rpo_breach_is_raised_only_past_the_rpo(config_source, age, breached):
    configuration = RecoveryPointObjective.objects.get(name="Configuration data")
    assert configuration.rpo == timedelta(minutes=15)
    now = timezone.now()
    _verified(config_source, captured_at=now - age)

    outcome = services.rpo_check(now=now)

    assert outcome.opened == (["Configuration data"] if breached else [])
    incidents = _rpo_incidents()
    if not breached:
        assert incidents == [] and not RpoBreach.objects.exists()
        return
    (incident,) = incidents
    assert incident.alert_fingerprint == f"{FINGERPRINT_PREFIX}{configuration.pk}"
    assert list(incident.affected_systems.all()) == [system("dashboard")]
    assert "RPO breached: Configuration data" in incident.title
    assert "15 min" in incident.description
    breach = RpoBreach.objects.get()
    assert breach.incident == incident and breach.cleared_at is None
    assert incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH, data__state="breached").count() == 1


def test_a_breach_opens_one_incident_and_recovery_is_noted_on_it(config_source):
    now = timezone.now()
    _verified(config_source, captured_at=now - timedelta(hours=1))
    services.rpo_check(now=now)
    services.rpo_check(now=now + timedelta(minutes=1))
    (incident,) = _rpo_incidents()
    assert RpoBreach.objects.count() == 1, "no second breach or incident while one is open"

    # A new verified backup: the breach clears, noted on the still-open incident.
    _verified(config_source, captured_at=now + timedelta(minutes=2))
    outcome = services.rpo_check(now=now + timedelta(minutes=3))
    assert outcome.cleared == ["Configuration data"]
    assert RpoBreach.objects.get().cleared_at == now + timedelta(minutes=3)
    assert incident.timeline.filter(data__state="met").exists()

    # Breached again while that incident is still open: a new breach row, the same incident.
    services.rpo_check(now=now + timedelta(minutes=40))
    assert RpoBreach.objects.filter(cleared_at__isnull=True).get().incident == incident
    assert _rpo_incidents() == [incident]
    assert incident.state in OPEN_STATES


def test_a_source_never_verified_is_a_breach_and_unconfigured_classes_are_not_measured(config_source):
    now = timezone.now()
    failed_run = BackupRun.objects.create(trigger=BackupRun.Trigger.SCHEDULED, state=BackupRun.State.FAILED)
    BackupArtefact.objects.create(
        run=failed_run,
        kind=BackupArtefact.Kind.FOLDER,
        source_name=config_source.name,
        folder=config_source,
        system=config_source.system,
        state=BackupArtefact.State.FAILED,
        captured_at=now,
    )
    statuses = {s.rpo_class.name: s for s in selectors.rpo_classes(now=now)}
    assert statuses["Configuration data"].breached
    assert "no verified backup of Dashboard config" in statuses["Configuration data"].detail
    # No source is configured for trading, historical or log data: nothing to measure, no alarm.
    assert not statuses["Trading data"].measured and not statuses["Trading data"].breached
    assert services.rpo_check(now=now).opened == ["Configuration data"]


def test_the_oldest_source_of_a_system_sets_its_recovery_point(config_source):
    now = timezone.now()
    logs = BackupFolder.objects.create(
        name="Dashboard logs", kind=BackupFolder.Kind.LOGS, path="/var/log/tmt", system=system("dashboard")
    )
    _verified(config_source, captured_at=now - timedelta(minutes=1))
    _verified(logs, captured_at=now - timedelta(minutes=20))
    _verified(logs, captured_at=now - timedelta(minutes=40))
    (row,) = selectors.system_rpo_rows(systems=[system("dashboard")], now=now)
    assert row.age == timedelta(minutes=20)
    assert row.breached


def test_the_report_and_the_incident_page_show_the_recovery_points(client, roles, config_source):
    from django.contrib.auth.models import Group
    from django.urls import reverse

    from tests.factories import UserFactory, open_incident

    user = UserFactory()
    user.groups.add(Group.objects.get(name="Incident Manager"))
    client.force_login(user)
    started = timezone.now() - timedelta(minutes=5)
    # Verified 10 minutes before the incident began: within the 15-minute RPO then. Another,
    # taken during the incident, does not count towards the point a restore could go back to.
    _verified(config_source, captured_at=started - timedelta(minutes=10))
    _verified(config_source, captured_at=started + timedelta(minutes=1))
    incident = open_incident(reported_by=user, systems=("dashboard", "market_analysis"), started_at=started)

    report = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    section = report[report.index('id="recovery-points"') :]
    assert "Dashboard" in section and "10 min before" in section and "Within RPO" in section
    assert "not backed up by the portal" in section  # the market analysis agent has no source

    page = client.get(incident.get_absolute_url()).content.decode()
    panel = page[page.index('data-testid="backups-panel"') :]
    assert 'data-testid="rpo-dashboard"' in panel and "within RPO" in panel


def test_a_scheduled_backup_is_skipped_while_one_runs_and_a_dead_run_is_failed(settings, config_source):
    now = timezone.now()
    first = services.backup_schedule_due(now=now)
    assert first.trigger == BackupRun.Trigger.SCHEDULED and first.state == BackupRun.State.QUEUED
    assert services.backup_schedule_due(now=now) is None, "one already queued: not doubled"

    # Its worker died mid-run: after the stale window it is failed, visibly, and the next is due.
    BackupRun.objects.filter(pk=first.pk).update(state=BackupRun.State.RUNNING, progress_at=now)
    later = now + settings.TMT_BACKUP_STALE_AFTER
    assert services.backup_run_stale_fail(now=later) == 0, "at the window's edge it still counts as running"
    assert services.backup_run_stale_fail(now=later + timedelta(seconds=1)) == 1
    first.refresh_from_db()
    assert first.state == BackupRun.State.FAILED and "stopped mid-run" in first.error
    assert not first.artefacts.filter(state=BackupArtefact.State.VERIFIED).exists()
    assert services.backup_schedule_due(now=later + timedelta(seconds=2)) is not None


def test_the_health_page_shows_each_classs_recovery_point(client, roles, config_source):
    from django.contrib.auth.models import Group
    from django.urls import reverse

    from tests.factories import UserFactory

    user = UserFactory()
    user.groups.add(Group.objects.get(name="On-Call Engineer"))
    client.force_login(user)
    _verified(config_source, captured_at=timezone.now() - timedelta(hours=2))
    page = client.get(reverse("incidents:health")).content.decode()
    summary = page[page.index('data-testid="rpo-summary"') :]
    row = summary[summary.index("Configuration data") :]
    row = row[: row.index("</tr>")]
    assert "Dashboard: 2 h old" in row and "RPO breached" in row
    assert "no system backed up by the portal" in summary  # trading data: no source configured here
