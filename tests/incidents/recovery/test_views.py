"""The emergency backup action of the incident page, its progress fragment and the backups page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents import roles as seed_roles
from incidents.recovery.models import BackupArtefact, BackupFolder, BackupRun
from tests.factories import UserFactory, open_incident, system

pytestmark = pytest.mark.django_db

ALLOWED = [seed_roles.SYSTEM_ADMINISTRATOR, seed_roles.RISK_MANAGER, seed_roles.INCIDENT_MANAGER]
REFUSED = [
    seed_roles.ON_CALL_ENGINEER,
    seed_roles.CTO,
    seed_roles.HEAD_OF_RISK,
    seed_roles.CEO,
    seed_roles.TRAINER,
    None,
]


@pytest.fixture
def source(roles, tmp_path):  # the roles fixture makes the groups
    return BackupFolder.objects.create(
        name="TMT configuration", kind=BackupFolder.Kind.CONFIGURATION, path=str(tmp_path), system=system("dashboard")
    )


def _login(client, role: str | None):
    user = UserFactory()
    if role:
        user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


@pytest.mark.parametrize("role", ALLOWED)
def test_the_seeds_backup_roles_start_an_emergency_backup_from_the_incident_page(client, source, role):
    user = _login(client, role)
    incident = open_incident(reported_by=user, systems=("dashboard",))
    page = client.get(incident.get_absolute_url())
    assert b'data-testid="emergency-backup-button"' in page.content

    response = client.post(reverse("recovery:incident_start", args=[incident.reference]))

    assert response.status_code == 302 and response.url.endswith("#backups")
    run = BackupRun.objects.get()
    assert (run.incident, run.requested_by, run.state, run.trigger) == (
        incident,
        user,
        BackupRun.State.QUEUED,
        BackupRun.Trigger.INCIDENT,
    )
    assert run.artefacts.get().source_name == "TMT configuration"
    assert incident.timeline.filter(
        data__backup_run=run.pk, action__startswith="Emergency backup requested by"
    ).exists()


@pytest.mark.parametrize("role", REFUSED)
def test_other_roles_may_not_start_one(client, source, role):
    _login(client, role)
    incident = open_incident(reported_by=UserFactory(), systems=("dashboard",))
    if role not in (seed_roles.TRAINER, None):
        assert b'data-testid="emergency-backup-button"' not in client.get(incident.get_absolute_url()).content

    response = client.post(reverse("recovery:incident_start", args=[incident.reference]))

    assert response.status_code == 403
    assert not BackupRun.objects.exists()
    assert not incident.timeline.filter(data__has_key="backup_run").exists()


def test_nothing_configured_is_a_clear_message_and_no_run(client, roles):
    _login(client, seed_roles.SYSTEM_ADMINISTRATOR)
    incident = open_incident(reported_by=UserFactory(), systems=("dashboard",))
    response = client.post(reverse("recovery:incident_start", args=[incident.reference]), follow=True)
    assert response.status_code == 200
    assert b"No backup source is configured" in response.content
    assert not BackupRun.objects.exists()


def test_an_unknown_incident_is_a_404_not_a_500(client, source):
    _login(client, seed_roles.SYSTEM_ADMINISTRATOR)
    assert client.post(reverse("recovery:incident_start", args=["TMT-INC-nope"])).status_code == 404
    assert client.get(reverse("recovery:progress", args=[999999])).status_code == 404


def test_the_progress_fragment_polls_while_running_and_stops_when_finished(client, source):
    _login(client, seed_roles.ON_CALL_ENGINEER)
    run = BackupRun.objects.create(trigger=BackupRun.Trigger.COMMAND, state=BackupRun.State.RUNNING, step="x: dumping")
    BackupArtefact.objects.create(run=run, kind=BackupArtefact.Kind.FOLDER, source_name="a", state="verified")
    BackupArtefact.objects.create(run=run, kind=BackupArtefact.Kind.FOLDER, source_name="b", state="running")
    url = reverse("recovery:progress", args=[run.pk])

    running = client.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in running and f'hx-get="{url}"' in running
    assert "1 of 2 done · x: dumping" in running

    BackupRun.objects.filter(pk=run.pk).update(state=BackupRun.State.VERIFIED)
    finished = client.get(url).content.decode()
    assert "hx-trigger" not in finished and "Verified" in finished


def test_the_backups_page_shows_each_class_and_is_refused_to_trainers(client, source):
    _login(client, seed_roles.ON_CALL_ENGINEER)
    page = client.get(reverse("recovery:backups")).content.decode()
    assert "Configuration data" in page and 'data-testid="rpo-dashboard"' in page
    assert "never verified" in page
    _login(client, seed_roles.TRAINER)
    assert client.get(reverse("recovery:backups")).status_code == 403
