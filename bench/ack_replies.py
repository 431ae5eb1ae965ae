"""Server time and query count of acknowledging from the page, with a full outbox.

Opens `--incidents` incidents (their first escalation step fired), gives each its own paged
responder with `--history` older SMS pages to the same number (the outbox a busy month leaves:
the reply's "most recent page to this number" must not scan it), then times, in-process with
Django's test client as the web server runs them:

- link page: GET /ack/<token>/ (the page the SMS's link opens),
- link tap: POST /ack/<token>/ (acknowledges one incident each),
- SMS reply: POST /provider/sms/ "ACK", signed (acknowledges one incident each),
- keypress: POST /provider/voice/ "4" for an incident already acknowledged (answered, nothing written).

    python bench/ack_replies.py                     # 300 incidents, 50,000 outbox rows
    python bench/ack_replies.py --incidents 60 --history 20   # quick smoke run

Goal: each under 50 ms median and 30 queries. It works in its own database
(BENCH_DATABASE_NAME, default tmt_ir_bench_ack) on the server DATABASE_URL names, dropped and
recreated on each run. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

# `python bench/ack_replies.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Stopwatch,
    load_average,
    median,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    use_bench_database,
    vacuum_analyze,
)

GOAL_MS = 50.0
GOAL_QUERIES = 30
SECRET = "bench-webhook-secret"


def load(incidents: int, history: int) -> list[dict]:
    """The incidents and their responders; returns one dict per incident (token, number, phone)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents import services
    from incidents.escalation.models import EscalationEvent
    from incidents.escalation.services import deadlines_fire_due
    from incidents.models import DetectionMethod, SeverityLevel, System
    from incidents.notifications import acks
    from incidents.notifications.models import Notification
    from incidents.oncall.models import Person
    from incidents.roles import ON_CALL_ENGINEER, ensure_role_groups

    ensure_role_groups()
    engineers = Group.objects.get(name=ON_CALL_ENGINEER)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"responder{i}", first_name="Responder", last_name=str(i), password="!")
        for i in range(incidents)
    )
    engineers.user_set.add(*users)
    Person.objects.bulk_create(
        Person(user=u, phone=f"+44207{i:07d}", sms_number=f"+447700{i:06d}") for i, u in enumerate(users)
    )
    severity = SeverityLevel.objects.get(level=2)
    system = System.objects.get(key="market_analysis")
    reporter = users[0]
    opened = [
        services.incident_open(
            title=f"Bench incident {i}",
            severity=severity,
            reported_by=reporter,
            detection_method=DetectionMethod.AUTOMATED_ALERT,
            affected_systems=[system],
            category="operational",
        )
        for i in range(incidents)
    ]
    deadlines_fire_due()  # step 0 of each (no roster: it records the event, pages nobody)
    events = {e.incident_id: e for e in EscalationEvent.objects.filter(rule="ack", step=0)}
    now = timezone.now()
    older = []
    for i, user in enumerate(users):
        for k in range(history):
            older.append(
                Notification(
                    incident=opened[(i + k + 1) % incidents],
                    channel=Notification.Channel.SMS,
                    recipient=user,
                    address=f"+447700{i:06d}",
                    subject="older page",
                    body="older page",
                    state=Notification.State.SENT,
                    next_attempt_at=now - timedelta(days=1, minutes=k),
                    sent_at=now - timedelta(days=1, minutes=k),
                )
            )
    Notification.objects.bulk_create(older, batch_size=5000)
    rows = []
    for i, (user, incident) in enumerate(zip(users, opened, strict=True)):
        for channel, address in ((Notification.Channel.SMS, f"+447700{i:06d}"), ("phone", f"+44207{i:07d}")):
            Notification.objects.create(
                incident=incident,
                event=events[incident.pk],
                channel=channel,
                recipient=user,
                address=address,
                subject="page",
                body="page",
                state=Notification.State.SENT,
                next_attempt_at=now,
                sent_at=now,
            )
        pages = list(Notification.objects.filter(event=events[incident.pk]).select_related("incident"))
        acks.ack_links_issue(pages)
        sms = Notification.objects.select_related("incident", "ack_link").get(event=events[incident.pk], channel="sms")
        url = acks.ack_link_url(sms)
        rows.append({"link": "/ack/" + url.rsplit("/ack/", 1)[1], "number": sms.address, "phone": f"+44207{i:07d}"})
    return rows


def timed(fn) -> tuple[float, int, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = fn()
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed, len(queries), response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=300, help="incidents (and responders); split across phases")
    parser.add_argument("--history", type=int, default=166, help="older SMS pages per responder")
    args = parser.parse_args()

    bench_db = use_bench_database("tmt_ir_bench_ack")
    setup_django()
    from django.conf import settings
    from django.test import Client

    from incidents.notifications import signatures
    from incidents.notifications.models import Notification

    settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET = SECRET
    settings.TMT_ACK_LINK_THROTTLE = "1000000/min"  # one client address does all the requests here
    watch = Stopwatch()
    print(f"loading {args.incidents} incidents, {args.incidents * args.history:,} older pages", flush=True)
    watch.step("recreate and migrate", lambda: (bench_db.recreate(), migrate()))
    rows = watch.step("incidents, responders, pages and links", lambda: load(args.incidents, args.history))
    watch.step("vacuum analyze", vacuum_analyze)
    outbox = Notification.objects.count()

    client = Client()
    half = len(rows) // 2
    by_link, by_sms = rows[:half], rows[half:]

    def signed(path: str, payload: dict):
        body = json.dumps(payload).encode()
        return client.post(
            path,
            body,
            content_type="application/json",
            headers={signatures.HEADER: signatures.sign(body, secret=SECRET)},
        )

    def run(name: str, items, request, expect: int) -> tuple[str, list[float], int]:
        times, most = [], 0
        for item in items:
            ms, queries, response = timed(lambda item=item: request(item))
            if response.status_code != expect:
                raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
            times.append(ms)
            most = max(most, queries)
        return name, times, most

    # Warm-up (templates, URL resolver, permission caches) on the first link, untimed.
    for _ in range(3):
        client.get(by_link[0]["link"])
    results = [
        run("link page (GET)", by_link, lambda r: client.get(r["link"]), 200),
        run("link tap (POST, acknowledges)", by_link, lambda r: client.post(r["link"]), 200),
        run(
            "SMS reply ACK (acknowledges)",
            by_sms,
            lambda r: signed("/provider/sms/", {"id": f"SM-{r['number']}", "from": r["number"], "body": "ACK"}),
            200,
        ),
        run(
            "keypress 4 (already acknowledged)",
            by_sms,
            lambda r: signed("/provider/voice/", {"id": f"CA-{r['phone']}", "from": r["phone"], "digits": "4"}),
            200,
        ),
    ]
    print(f"\n{outbox:,} outbox rows; load {load_average()}\n")
    print_table(
        ["request", "n", "median ms", "p99 ms", "max queries"],
        [(name, len(t), f"{median(t):.1f}", f"{percentile(t, 99):.1f}", q) for name, t, q in results],
    )
    keys = ["link_page", "link_tap", "sms_ack", "keypress"]
    figures = {"outbox_rows": outbox}
    for key, (_, times, queries) in zip(keys, results, strict=True):
        figures[f"{key}_p50_ms"] = round(median(times), 1)
        figures[f"{key}_p99_ms"] = round(percentile(times, 99), 1)
        figures[f"{key}_queries"] = queries
    figures["goal_met"] = all(
        figures[f"{k}_p50_ms"] <= GOAL_MS and figures[f"{k}_queries"] <= GOAL_QUERIES for k in keys
    )
    figures["load"] = load_average()
    print_result_json(figures)


if __name__ == "__main__":
    main()
