"""`manage.py emergency_backup`: the seed's Data Backup Emergency from the command line.

Runs in this process by default, so it works with the broker or the workers down; --queue sends
it to the backups worker instead. Exit status 1 when anything failed to back up or verify."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.models import Incident
from incidents.recovery import services
from incidents.recovery.models import BackupRun


class Command(BaseCommand):
    help = "Dump the configured trading databases and archive the configured folders, each verified."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--incident", help="Record the run on this incident (its reference) and attach it.")
        parser.add_argument("--user", help="Who asks for it (username); recorded on the incident's timeline.")
        parser.add_argument("--queue", action="store_true", help="Queue it for the backups worker and return.")

    def handle(self, *args, incident: str | None, user: str | None, queue: bool, **options) -> None:
        found = None
        if incident:
            found = Incident.objects.filter(reference=incident).first()
            if found is None:
                raise CommandError(f"No incident {incident}.")
        person = None
        if user:
            person = get_user_model().objects.filter(username=user).first()
            if person is None:
                raise CommandError(f"No user {user}.")
        trigger = BackupRun.Trigger.INCIDENT if found else BackupRun.Trigger.COMMAND
        try:
            run = services.backup_run_request(trigger=trigger, incident=found, user=person, enqueue=queue)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if queue:
            self.stdout.write(f"Backup run {run.pk} queued on the backups queue.")
            return
        self.stdout.write(f"Backup run {run.pk}: {run.artefacts.count()} artefacts…")
        done = services.backup_run_execute(run_id=run.pk)
        if done is None:
            raise CommandError(f"Backup run {run.pk} was taken by a worker.")
        for artefact in done.artefacts.all():
            self.stdout.write(f"  {services.artefact_summary(artefact)}")
            if artefact.storage_name:
                self.stdout.write(f"    stored as {artefact.storage_name}")
        if done.state != BackupRun.State.VERIFIED:
            raise CommandError(f"Backup run {done.pk} FAILED: {done.error}")
        summary = f"Backup run {done.pk} verified in {done.duration_s:.1f} s ({done.location})."
        self.stdout.write(self.style.SUCCESS(summary))
