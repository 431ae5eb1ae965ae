"""Two people tick the same step at once: one wins, the other gets a field error, not a 500."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ValidationError
from django.db import connections

from incidents.models import TimelineEntry
from incidents.runbooks import services
from incidents.runbooks.models import Runbook, StepRecord
from tests.conftest import _user_in
from tests.factories import open_incident

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres"),
]


def test_the_same_step_ticked_twice_at_once_is_recorded_once(engineer):
    other = _user_in("System Administrator", "sysadmin-race")
    incident = open_incident(reported_by=engineer)
    runbook = Runbook.objects.get(key="configuration-fixes")
    run = services.runbook_run_start(incident=incident, runbook=runbook, user=engineer)
    first = runbook.current_revision.steps.get(position=1)
    barrier = threading.Barrier(2)

    def tick(user) -> str:
        try:
            barrier.wait()
            services.runbook_step_record(run=run, step=first, user=user, outcome="done")
            return "recorded"
        except ValidationError as exc:
            return exc.message_dict["step"][0]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(tick, [engineer, other]))
    assert outcomes == ["Step 1 is already recorded.", "recorded"]
    assert StepRecord.objects.filter(run=run).count() == 1
    assert TimelineEntry.objects.filter(incident=incident, data__step=first.pk).count() == 1
