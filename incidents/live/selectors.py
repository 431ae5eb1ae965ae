from __future__ import annotations

from django.urls import reverse

from incidents.models import Incident, State

# Enough for the tab title and a notification per new major incident; more than this many
# unacknowledged major incidents at once is a count, not a list, for a person.
MAJOR_LISTED = 20


def live_summary() -> dict:
    """Unacknowledged real incidents: how many, and the major ones (for notifications)."""
    unacknowledged = Incident.objects.filter(state=State.DETECTED, is_drill=False)
    major = (
        unacknowledged.filter(severity__major=True)
        .order_by("-detected_at")
        .values_list("pk", "reference", "title", "severity__level")[:MAJOR_LISTED]
    )
    return {
        "unacknowledged": unacknowledged.count(),
        "major": [
            {
                "id": pk,
                "reference": reference,
                "title": title,
                "severity": level,
                "url": reverse("incidents:detail", args=[reference]),
            }
            for pk, reference, title, level in major
        ],
    }
