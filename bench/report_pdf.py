"""Incident report PDF: render time by timeline length, and the time to serve a stored PDF.

Builds three resolved Sev1 incidents with 10, 300 and 2,000 timeline entries (plus escalations,
regulatory notifications, action items and a submitted review, as a real report has), then:

- renders each report the way the reports-queue task does (`report_render_run`: read the data,
  render the template, WeasyPrint with the static-only fetcher, store the file), several times,
  in a worker process that has already rendered once (fonts loaded);
- serves the stored, current PDF of the 300-entry report through the download view with
  Django's test client as a logged-in Incident Manager, reading the whole body.

Goal: 300 entries rendered in 2 s or less; a stored PDF served in 20 ms or less.

    python bench/report_pdf.py
    python bench/report_pdf.py --runs 5

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_report_pdf) on the
server DATABASE_URL names, dropped and recreated on each run, writes PDFs to a temporary media
folder and queues no task on the real broker. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

# `python bench/report_pdf.py` puts bench/ on sys.path, not the project root that holds bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    load_average,
    median,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    use_bench_database,
)

SIZES = (10, 300, 2000)
GOAL_RENDER_300_S = 2.0
GOAL_SERVE_MS = 20.0
ACTIONS = [
    "Checked {system} health endpoint: HTTP 503 after {n} ms",
    "Restarted {system}; watching order flow",
    "Broker confirms fills are delayed by up to {n} seconds on EUR/USD",
    "Rolled back configuration change #{n} on {system}",
    "Status: Investigating. Impact: signals delayed for all strategies. Next update in 30 minutes.",
    "Paged the database on-call; replication lag {n} s and climbing",
    "Emergency stop verified by the circuit breaker: all trading halted",
    "Reviewed logs /var/log/tmt/trading.log around the failure window; no errors before {n}:00",
]


def build(seed: int = 7) -> dict:
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents import services
    from incidents.escalation.models import RegulatoryCategory
    from incidents.escalation.services import deadlines_fire_due, regulatory_raise
    from incidents.models import IncidentChecklistItem, TimelineEntry
    from incidents.roles import ensure_role_groups
    from reports import services as report_services
    from reports.models import ActionItem
    from tests.factories import UserFactory, make_roster, open_incident

    rng = random.Random(seed)
    ensure_role_groups()
    team = make_roster()
    people = [team[k] for k in ("oncall1", "oncall2", "oncall3", "im", "cto", "head_of_risk")]
    manager = UserFactory(username="bench_manager", first_name="Morgan", last_name="Manager")
    manager.groups.add(Group.objects.get(name="Incident Manager"))
    systems = [
        "circuit_breaker",
        "risk_management",
        "execution_engine",
        "market_analysis",
        "database",
        "message_broker",
    ]
    category = RegulatoryCategory.objects.filter(raised_automatically=False).first()
    incidents = {}
    for size in SIZES:
        # The 10-entry report is a small incident; the long ones carry everything a big one has
        # (escalations, a regulatory notification, action items, a submitted review).
        rich = size >= 300
        lead = people[0]
        started = timezone.now() - timedelta(hours=6)
        incident = open_incident(
            reported_by=lead,
            level=1 if rich else 3,
            title=f"Execution engine rejecting orders ({size}-entry timeline)",
            systems=tuple(rng.sample(systems, 3)),
            user_impact="Orders rejected for all strategies; positions could not be adjusted.",
            detected_at=started,
        )
        if rich:
            deadlines_fire_due()  # the first page and the Sev1 → CTO escalation
            if category is not None:
                regulatory_raise(incident=incident, category_key=category.key, user=lead)
        services.incident_transition(
            incident=incident, name="acknowledge", user=lead, at=started + timedelta(minutes=3)
        )
        services.incident_transition(
            incident=incident, name="start_investigation", user=lead, at=started + timedelta(minutes=4)
        )
        # The bench ticks the assessment in one statement: five more entries would not fit in ten.
        IncidentChecklistItem.objects.filter(incident=incident, gates_containment=True).update(
            done_at=started + timedelta(minutes=10), done_by=lead
        )
        services.incident_transition(incident=incident, name="contain", user=lead, at=started + timedelta(minutes=40))
        incident = services.incident_update(
            incident=incident,
            user=lead,
            primary_cause="A configuration push set the order gateway's connection pool to zero.",
            contributing_factors="No validation of pool sizes; the change skipped staging.",
            resolution_actions="Rolled back the configuration; restarted the gateway in order.",
            verification_steps="Orders filled normally for two hours; reconciliation clean.",
        )
        services.incident_transition(
            incident=incident, name="resolve", user=lead, at=started + timedelta(hours=5, minutes=30)
        )
        if rich:
            for k in range(4):
                report_services.action_item_create(
                    incident=incident,
                    user=lead,
                    title=f"Follow-up {k + 1}: validate pool sizes before deploy",
                    kind=rng.choice(ActionItem.Kind.values),
                    owner=rng.choice(people),
                    due_date=timezone.localdate() + timedelta(days=7 * (k + 1)),
                )
            review = report_services.review_start(incident=incident, user=lead)
            review = report_services.review_update(
                review=review,
                user=lead,
                timeline_reconstruction="Push at 09:58, rejections from 10:00, rollback 10:40, full recovery 15:30.",
                response_effectiveness="Acknowledged in 3 minutes; containment took 40.",
                went_well="Emergency stop worked first time.",
                could_improve="The runbook did not cover the gateway's pool.",
                prevention_immediate="Pool size validated in CI.",
                process_improvements="Configuration changes go through staging.",
            )
            report_services.review_submit(review=review, user=lead)
        # Top the timeline up to `size` entries with the notes, checks and updates of a response.
        missing = size - TimelineEntry.objects.filter(incident=incident).count()
        span = timedelta(hours=5)
        entries = []
        for n in range(max(0, missing)):
            text = rng.choice(ACTIONS).format(system=rng.choice(systems).replace("_", " "), n=rng.randint(2, 900))
            if rng.random() < 0.15:
                text += "\n" + rng.choice(ACTIONS).format(system="gateway", n=rng.randint(2, 900))
            at = started + timedelta(minutes=5) + span * (n / max(missing, 1))
            entries.append(
                TimelineEntry(
                    incident=incident,
                    kind=rng.choice(["note", "note", "note", "status_update", "health", "evidence"]),
                    action=text,
                    owner=rng.choice(people),
                    occurred_at=at,
                    recorded_at=at,
                )
            )
        TimelineEntry.objects.bulk_create(entries)
        incident.refresh_from_db()
        incidents[size] = incident
        print(f"  {incident.reference}: {incident.timeline.count():>5} timeline entries", flush=True)
    return {"incidents": incidents, "manager": manager}


def time_renders(incident, runs: int) -> tuple[list[float], list[float], int, int]:
    from django.utils import timezone

    from reports import selectors
    from reports import services as report_services
    from reports.models import ReportRender

    samples, cpu = [], []
    pages = size = 0
    for _ in range(runs):
        # A fresh queued render each time, as the task would find it.
        render = ReportRender.objects.create(
            incident=incident,
            timeline_kinds="",
            source_key=f"bench-{time.perf_counter_ns()}",
            reason=ReportRender.Reason.ON_DEMAND,
            requested_at=timezone.now(),
        )
        start, start_cpu = time.perf_counter(), time.process_time()
        summary = report_services.report_render_run(render_id=render.pk)
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if not summary.startswith("rendered"):
            raise RuntimeError(f"render failed: {summary}")
        render.refresh_from_db()
        pages, size = render.pages, render.size_bytes
    assert selectors.pdf_status(incident=incident, kinds=[]).current
    return samples, cpu, pages, size


def time_serve(client, url: str, *, warmup: int = 10, runs: int = 200) -> tuple[list[float], int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get() -> int:
        response = client.get(url)
        if response.status_code != 200 or response.get("X-Report-Current") != "yes":
            raise RuntimeError(f"GET {url} answered {response.status_code} {response.get('X-Report-Current')}")
        body = b"".join(response.streaming_content)
        response.close()
        return len(body)

    for _ in range(warmup):
        get()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        get()
        samples.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as captured:
        size = get()
    return samples, len(captured.captured_queries), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="renders per size (2,000 entries: at least 3)")
    args = parser.parse_args()

    bench_db = use_bench_database("tmt_ir_bench_report_pdf")
    media = tempfile.mkdtemp(prefix="tmt-bench-media-")
    os.environ["DJANGO_MEDIA_ROOT"] = media
    # Building the incidents queues escalation and render tasks; no worker serves the bench
    # database, so they go to an in-process broker instead of piling up in Redis.
    os.environ["CELERY_BROKER_URL"] = "memory://localhost/"
    setup_django()
    import logging

    # The backdated incidents' escalation ETA tasks expire in the past; Celery warns per task.
    logging.getLogger("celery.app.base").setLevel(logging.ERROR)
    from django.test import Client
    from django.urls import reverse

    import reports.pdf  # noqa: F401 - quiets WeasyPrint's progress log before anything renders

    print(f"database {bench_db.name}; media in {media}; load average {load_average()}", flush=True)
    bench_db.recreate()
    migrate()
    data = build()

    # A worker renders many reports: time them once fonts and styles are loaded.
    cold_start = time.perf_counter()
    time_renders(data["incidents"][10], 1)
    cold = time.perf_counter() - cold_start

    rows, medians = [], {}
    for size in SIZES:
        runs = max(args.runs if size < 2000 else min(args.runs, 3), 1)
        samples, cpu, pages, nbytes = time_renders(data["incidents"][size], runs)
        medians[size] = median(samples)
        rows.append(
            [
                f"{size:,}",
                runs,
                f"{medians[size]:.2f}",
                f"{min(samples):.2f}",
                f"{max(samples):.2f}",
                f"{median(cpu):.2f}",
                pages,
                f"{nbytes / 1024:.0f}",
            ]
        )
    print()
    print("Render (report_render_run: data + template + WeasyPrint + store), seconds of wall clock;")
    print("cpu = this process's CPU time, which other load on the machine does not inflate")
    print_table(["entries", "runs", "median", "min", "max", "cpu", "pages", "KiB"], rows)
    print(f"(first render in a fresh process, 10 entries: {cold:.2f} s)")

    client = Client()
    client.force_login(data["manager"])
    incident = data["incidents"][300]
    samples, queries, size = time_serve(client, reverse("reports:pdf", args=[incident.reference]))
    serve_ms = median(samples)
    print()
    print("Serve the stored, current PDF (300 entries) through the download view, ms")
    print_table(
        ["median", "p95", "min", "queries", "KiB"],
        [[f"{serve_ms:.2f}", f"{percentile(samples, 95):.2f}", f"{min(samples):.2f}", queries, f"{size / 1024:.0f}"]],
    )
    ok_render = medians[300] <= GOAL_RENDER_300_S
    ok_serve = serve_ms <= GOAL_SERVE_MS
    print()
    print(
        f"goal: 300 entries <= {GOAL_RENDER_300_S} s: {'met' if ok_render else 'MISSED'} ({medians[300]:.2f} s); "
        f"stored PDF <= {GOAL_SERVE_MS:.0f} ms: {'met' if ok_serve else 'MISSED'} ({serve_ms:.2f} ms); "
        f"load average {load_average()}"
    )
    print_result_json(
        {
            "render_10_s": round(medians[10], 3),
            "render_300_s": round(medians[300], 3),
            "render_2000_s": round(medians[2000], 3),
            "serve_stored_ms": round(serve_ms, 2),
        }
    )


if __name__ == "__main__":
    main()
