"""`manage.py seed_demo`: demo users and a month of incidents (`make run` passes --if-empty)."""

import time
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.devtools.demo import (
    DEFAULT_DAYS,
    DEFAULT_INCIDENTS,
    DEFAULT_SEED,
    DEMO_PASSWORD,
    seed_demo,
)
from incidents.models import State


class Command(BaseCommand):
    help = (
        "Create demo users in every role and a realistic month of incidents, all written "
        "through the incident services with past times."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--incidents",
            type=int,
            default=DEFAULT_INCIDENTS,
            help=f"How many incidents to create (default {DEFAULT_INCIDENTS}).",
        )
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_DAYS,
            help=f"Spread them over this many past days (default {DEFAULT_DAYS}).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help=f"Random seed; the same seed gives the same month (default {DEFAULT_SEED}).",
        )
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help="Password for newly created demo users (existing users keep theirs).",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if any incident exists (used by `make run`).",
        )

    def handle(self, *args, **options) -> None:
        if options["incidents"] < 0:
            raise CommandError("--incidents must be 0 or more.")
        if options["days"] < 1:
            raise CommandError("--days must be 1 or more.")
        if not options["password"]:
            raise CommandError("--password must not be empty.")
        started = time.monotonic()
        try:
            result = seed_demo(
                incidents=options["incidents"],
                seed=options["seed"],
                days=options["days"],
                password=options["password"],
                if_empty=options["if_empty"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if result.skipped:
            self.stdout.write("Incidents already exist; demo data not seeded (--if-empty).")
            return

        states = Counter(i.state for i in result.incidents)
        levels = Counter(i.severity.level for i in result.incidents)
        self.stdout.write(
            self.style.SUCCESS(f"Created {len(result.incidents)} demo incidents in {time.monotonic() - started:.1f} s.")
        )
        self.stdout.write(
            "  by state:    " + ", ".join(f"{State(s).label.lower()} {states[s]}" for s in State if states[s])
        )
        self.stdout.write("  by severity: " + ", ".join(f"Sev{lvl} {levels[lvl]}" for lvl in sorted(levels)))
        self.stdout.write("")
        width = max(len(row.username) for row in result.users)
        role_width = max(len(row.role) for row in result.users)
        self.stdout.write(f"  {'username':<{width}}  {'role':<{role_width}}  password")
        self.stdout.write(f"  {'-' * width}  {'-' * role_width}  {'-' * 20}")
        for row in result.users:
            password = options["password"] if row.created else "(existing user, unchanged)"
            self.stdout.write(f"  {row.username:<{width}}  {row.role:<{role_width}}  {password}")
        if result.alert_token:
            self.stdout.write("")
            self.stdout.write(
                f"  Alertmanager webhook (integration “{result.alert_integration.name}”): POST "
                f"{settings.TMT_SITE_URL}/api/v1/alerts/ with “Authorization: Bearer {result.alert_token}”"
            )
            self.stdout.write("  The token is shown only now; rotate it in the admin (Alert integrations).")
