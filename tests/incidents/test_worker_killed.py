"""A worker killed with SIGKILL while deadlines are due: each still fires exactly once.

Real processes: `celery worker` and `celery beat` as the deployment runs them, on Redis and the
test's PostgreSQL database.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from incidents.models import Deadline, EscalationEvent, EscalationStep, SeverityLevel, TimelineEntry
from tests.celery_fixtures import purge_queues, wait_for
from tests.factories import make_roster, open_incident

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("postgres")]

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = 60


def _env(tmp_path: Path) -> dict:
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env["TMT_VAR_DIR"] = str(tmp_path)
    env["EMAIL_URL"] = "dummymail://"
    env["TMT_SMS_PROVIDER_URL"] = ""  # pages fail fast and permanently: firing is what is measured
    return env


def _start(args: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tmt_ir", *args],
        cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )


def _worker(tmp_path, name):
    return _start(
        ["worker", "-Q", "escalation,notifications", "-P", "solo", "-n", f"{name}@%h",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        tmp_path, name,
    )


def test_deadlines_fire_exactly_once_across_a_sigkilled_worker(tmp_path):
    team = make_roster()
    purge_queues()
    # Every incident's chain fires step 0 at open and step 1 two seconds later.
    SeverityLevel.objects.update(response_time=timedelta(seconds=2), response_next_business_day=False)
    EscalationStep.objects.filter(order__gt=1).delete()
    beat = _start(["beat", "-s", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"], tmp_path, "beat")
    first = _worker(tmp_path, "first")
    try:
        for i in range(INCIDENTS):
            open_incident(reported_by=team["oncall1"], level=3, title=f"Load {i}", financial_impact_usd=None)
        # Let the first worker get into the firing, then kill it without warning.
        wait_for(lambda: EscalationEvent.objects.exists(), timeout=30, what="the first worker to start firing")
        time.sleep(0.3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        fired_before = EscalationEvent.objects.count()
        assert fired_before < INCIDENTS * 2, "the kill came too late to test anything"
        time.sleep(2.5)  # step 1 of every chain is now due, with no worker alive
        second = _worker(tmp_path, "second")
        try:
            wait_for(
                lambda: EscalationEvent.objects.count() >= INCIDENTS * 2
                and not Deadline.objects.filter(fired_at=None, cancelled_at=None, due_at__lte=timezone.now()).exists(),
                timeout=60,
                what="every due deadline to fire",
            )
            time.sleep(2)  # a duplicate, if there were one, would show up now
        finally:
            second.terminate()
            second.wait(20)
    finally:
        for process in (first, beat):
            if process.poll() is None:
                process.kill()
                process.wait(10)

    per_step = EscalationEvent.objects.values("incident", "rule", "step").annotate(n=Count("id"))
    assert per_step.count() == INCIDENTS * 2
    assert {row["n"] for row in per_step} == {1}
    entries = TimelineEntry.objects.filter(kind="escalation").values("incident", "data__step").annotate(n=Count("id"))
    assert {row["n"] for row in entries} == {1}, "a step was recorded on the timeline twice"
    assert not Deadline.objects.filter(fired_at=None, cancelled_at=None, due_at__lte=timezone.now()).exists()
    print(f"fired before the kill: {fired_before}, after: {EscalationEvent.objects.count() - fired_before}")
