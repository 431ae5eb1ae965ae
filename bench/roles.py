"""Incident roles: the incident page with its roles panel, and giving and leaving a role.

Builds an on-call team (a daily rotation of three engineers, a Risk Manager rotation, the
escalation contacts) and a set of open incidents, then:

- the incident page, as an Incident Manager (every role's form, today's on-call offers), with
  Django's test client in-process: median server time and queries;
- `incident_role_assign` (an Incident Manager gives the scribe role to today's on-call engineer:
  the row, the timeline entry, the SMS and email queued in the outbox) and
  `incident_role_release`, each in its own transaction, on a different incident each time.

Goal: the page under 50 ms median and 15 queries (as bench/pages.py's); a role change under 20 ms.

    python bench/roles.py
    python bench/roles.py --incidents 50 --runs 50

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_roles) on the server
DATABASE_URL names, dropped and recreated on each run. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import time as clock_time
from pathlib import Path

# `python bench/roles.py` puts bench/ on sys.path, not the project root that holds bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    load_average,
    median,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    time_pages,
    use_bench_database,
)

GOAL_PAGE_MS = 50.0
GOAL_PAGE_QUERIES = 15
GOAL_CHANGE_MS = 20.0


def build(incidents: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents import services
    from incidents.models import DetectionMethod, SeverityLevel
    from incidents.oncall.models import OnCallRotation, Person, RoleContact, RotationMember
    from incidents.roles import ensure_role_groups

    ensure_role_groups()
    users = {}
    password = make_password(None)  # unusable: the client forces the login
    for n, (key, role) in enumerate(
        [
            ("oncall1", "On-Call Engineer"),
            ("oncall2", "On-Call Engineer"),
            ("oncall3", "On-Call Engineer"),
            ("risk1", "Risk Manager"),
            ("risk2", "Risk Manager"),
            ("im", "Incident Manager"),
            ("cto", "CTO"),
            ("head_of_risk", "Head of Risk Management"),
        ]
    ):
        user = get_user_model().objects.create(
            username=key, first_name=key.title(), last_name="Bench", email=f"{key}@tmt.example", password=password
        )
        user.groups.add(Group.objects.get(name=role))
        Person.objects.create(user=user, phone=f"+44207000{n:04d}", sms_number=f"+44770000{n:04d}")
        users[key] = user
    today = timezone.now().date()
    for name, role, members in [
        ("Primary on-call", "On-Call Engineer", ["oncall1", "oncall2", "oncall3"]),
        ("Risk on-call", "Risk Manager", ["risk1", "risk2"]),
    ]:
        rotation = OnCallRotation.objects.create(
            name=name,
            role=Group.objects.get(name=role),
            shift=OnCallRotation.Shift.DAILY,
            handover_time=clock_time(0, 0),
            timezone="UTC",
            starts_on=today,
        )
        for position, key in enumerate(members):
            RotationMember.objects.create(rotation=rotation, user=users[key], position=position)
    for role, key in [("Incident Manager", "im"), ("CTO", "cto"), ("Head of Risk Management", "head_of_risk")]:
        RoleContact.objects.create(role=Group.objects.get(name=role), primary=users[key])
    level = SeverityLevel.objects.get(level=2)
    opened = [
        services.incident_open(
            title=f"Market analysis agent degraded #{i}",
            severity=level,
            reported_by=users["im"],
            commander=None,
            detection_method=DetectionMethod.AUTOMATED_ALERT,
        )
        for i in range(incidents)
    ]
    return {"users": users, "incidents": opened}


def time_changes(data: dict, runs: int) -> tuple[list[float], list[float], int]:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from incidents import services
    from incidents.models import IncidentRole

    im, on_call = data["users"]["im"], data["users"]["oncall1"]
    assign, release, queries = [], [], 0
    for n in range(runs):
        incident = data["incidents"][n % len(data["incidents"])]
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            with transaction.atomic():
                services.incident_role_assign(incident=incident, role=IncidentRole.SCRIBE, holder=on_call, by=im)
            assign.append((time.perf_counter() - start) * 1000)
        queries = len(captured.captured_queries)
        start = time.perf_counter()
        with transaction.atomic():
            services.incident_role_release(incident=incident, role=IncidentRole.SCRIBE, by=im)
        release.append((time.perf_counter() - start) * 1000)
    return assign, release, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=200, help="open incidents (default 200)")
    parser.add_argument("--runs", type=int, default=200, help="role changes and page rounds (default 200)")
    args = parser.parse_args()

    bench_db = use_bench_database("tmt_ir_bench_roles")
    # Opening incidents queues escalation work; no worker serves the bench database.
    os.environ["CELERY_BROKER_URL"] = "memory://localhost/"
    setup_django()
    from django.test import Client

    from incidents.notifications.models import Notification

    print(f"database {bench_db.name}; load average {load_average()}", flush=True)
    bench_db.recreate()
    migrate()
    data = build(args.incidents)
    client = Client()
    client.force_login(data["users"]["im"])
    page = data["incidents"][0].get_absolute_url()
    (timing,) = time_pages(client, [("incident page (roles panel)", page)], runs=args.runs)
    assign, release, assign_queries = time_changes(data, args.runs)
    pages_queued = Notification.objects.filter(recipient=data["users"]["oncall1"]).count()

    print_table(
        ["what", "median ms", "p95 ms", "queries"],
        [
            [timing.name, timing.median_ms, timing.p95_ms, timing.queries],
            [
                "incident_role_assign (+ SMS and email queued)",
                round(median(assign), 2),
                round(percentile(assign, 95), 2),
                assign_queries,
            ],
            ["incident_role_release", round(median(release), 2), round(percentile(release, 95), 2), ""],
        ],
    )
    print(f"pages queued to the new holder: {pages_queued} ({args.runs} assignments); load average {load_average()}")
    result = {
        "page_ms": timing.median_ms,
        "page_queries": timing.queries,
        "assign_ms": round(median(assign), 2),
        "assign_queries": assign_queries,
        "release_ms": round(median(release), 2),
        "pages_queued": pages_queued,
        "goal_met": timing.median_ms < GOAL_PAGE_MS
        and timing.queries < GOAL_PAGE_QUERIES
        and median(assign) < GOAL_CHANGE_MS
        and median(release) < GOAL_CHANGE_MS,
    }
    print_result_json(result)


if __name__ == "__main__":
    main()
