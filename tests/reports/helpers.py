"""Helpers for the reports tests: a resolved incident, a review ready to submit, PDF text."""

from __future__ import annotations

from io import BytesIO

from django.contrib.auth.models import Group
from pypdf import PdfReader

from incidents.roles import ensure_role_groups
from reports import services as report_services
from tests.factories import UserFactory, open_incident, resolve  # noqa: F401 - resolve is used from here too

SECTION_HEADINGS = [
    "Summary",
    "Timeline",
    "Root Cause Analysis",
    "Resolution",
    "Lessons Learned",
    "Prevention",
    "Action Items",
    "Escalations and Regulatory Notifications",
    "Post-Incident Review and Sign-off",
]

REVIEW_TEXT = {
    "timeline_reconstruction": "Feed stalled at 14:02, alert at 14:04, restart at 14:20.",
    "primary_cause": "Market data consumer ran out of file descriptors.",
    "contributing_factors": "ulimit left at the distribution default.",
    "root_cause_analysis": "lsof on the host showed 1024 open sockets.",
    "response_effectiveness": "Acknowledged within two minutes; containment took too long.",
    "resolution_actions": "Raised the limit and restarted the consumer.",
    "verification_steps": "Signals flowing for a full trading session.",
    "went_well": "Alert fired quickly.",
    "could_improve": "No runbook for descriptor exhaustion.",
    "process_improvements": "Add a runbook entry.",
    "prevention_immediate": "Limit raised on every host.",
    "prevention_long_term": "Bake limits into the image.",
    "monitoring_improvements": "Alert on open descriptors above 80% of the limit.",
    "prevention_measures": "Review limits quarterly.",
}


def user_in(role: str, username: str, **kwargs):
    ensure_role_groups()
    user = UserFactory(username=username, **kwargs)
    user.groups.add(Group.objects.get(name=role))
    return user


def resolved_incident(user, **kwargs):
    return resolve(open_incident(reported_by=user, **kwargs), user)


def written_review(incident, author, **overrides):
    """A started review with every agenda item filled in, ready to submit."""
    review = report_services.review_start(incident=incident, user=author)
    return report_services.review_update(review=review, user=author, **(REVIEW_TEXT | overrides))


def submitted_review(incident, author, **overrides):
    review = written_review(incident, author, **overrides)
    return report_services.review_submit(review=review, user=author)


def pdf_text(content: bytes) -> str:
    reader = PdfReader(BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def pdf_pages(content: bytes) -> int:
    return len(PdfReader(BytesIO(content)).pages)
