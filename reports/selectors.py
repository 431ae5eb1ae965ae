"""Reads for reports: the report's data, whether a stored PDF is current, reminders, metrics."""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Avg,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth
from django.template.loader import get_template
from django.utils import timezone

from incidents.escalation.models import RTO_RULE_PREFIX, EscalationEvent, RegulatoryObligation
from incidents.models import (
    BusinessHoliday,
    DetectionMethod,
    Incident,
    PhaseTarget,
    SeverityLevel,
    State,
    System,
    TimelineEntry,
    format_duration,
)
from incidents.oncall.selectors import role_contact
from incidents.recovery import selectors as recovery_selectors
from incidents.roles import INCIDENT_MANAGER
from incidents.selectors import (
    Clock,
    done_in_time,
    is_overdue,
    phase_clocks,
    phase_targets,
    response_clock,
    review_clock,
)

from .models import REPORT_TEXT_FIELDS, ActionItem, PostIncidentReview, ReportRender

REPORT_TEMPLATE = "reports/report.html"
REPORT_CSS = Path(settings.BASE_DIR) / "static" / "css" / "report.css"
KIND_LABELS = dict(TimelineEntry.Kind.choices)
REVIEW_RULE_PREFIX = "review:"
ACTION_RULE_PREFIX = "action:"
CLASSIFICATION = "Internal – Confidential"


def incident_has_approved_review(*, incident: Incident) -> bool:
    return PostIncidentReview.objects.filter(incident=incident, state=PostIncidentReview.State.APPROVED).exists()


# -- which report -------------------------------------------------------------------------------


def parse_kinds(values: list[str]) -> list[str]:
    """The timeline kinds asked for, valid ones only, in a stable order; [] means every kind."""
    wanted = {v for v in values if v in KIND_LABELS}
    if wanted == set(KIND_LABELS):
        return []
    return [k for k in KIND_LABELS if k in wanted]


def kinds_key(kinds: list[str]) -> str:
    return ",".join(kinds)


def reviews_of(incident: Incident) -> list[PostIncidentReview]:
    """Every revision, newest first, without the (large) frozen HTML."""
    return list(
        PostIncidentReview.objects.filter(incident=incident)
        .select_related("author", "submitted_by", "approved_by", "changes_requested_by")
        .defer("frozen_html")
        .order_by("-revision")
    )


@lru_cache(maxsize=1)
def _template_fingerprint() -> str:
    # A deploy that changes the report's template or stylesheet makes every stored PDF stale.
    template = get_template(REPORT_TEMPLATE)
    origin = Path(template.origin.name)
    digest = hashlib.sha256(origin.read_bytes())
    if REPORT_CSS.exists():
        digest.update(REPORT_CSS.read_bytes())
    return digest.hexdigest()[:16]


def report_source_key(*, incident_id: int, kinds: list[str]) -> str:
    """A fingerprint of everything the report shows; equal keys mean an equal report.

    Nearly every write to an incident records a timeline entry, so the newest entry id covers
    notes, transitions, escalations, notifications and obligations; the incident's, reviews' and
    action items' updated_at and the affected systems (which, and their RTOs) cover the rest.
    One query: it runs on every download.
    """
    systems = Incident.affected_systems.through.objects.filter(incident=OuterRef("pk")).values("incident")

    def per_incident(model, **aggregate):
        return Subquery(
            model.objects.filter(incident=OuterRef("pk")).values("incident").annotate(**aggregate).values("v")
        )

    row = (
        Incident.objects.filter(pk=incident_id)
        .annotate(
            last_entry=Subquery(TimelineEntry.objects.filter(incident=OuterRef("pk")).order_by("-id").values("id")[:1]),
            last_review=per_incident(PostIncidentReview, v=Max("updated_at")),
            review_count=per_incident(PostIncidentReview, v=Count("id")),
            last_item=per_incident(ActionItem, v=Max("updated_at")),
            item_count=per_incident(ActionItem, v=Count("id")),
            system_count=Subquery(systems.annotate(v=Count("system_id")).values("v")),
            system_ids=Subquery(systems.annotate(v=Sum("system_id")).values("v")),
            system_rtos=Subquery(systems.annotate(v=Sum("system__rto")).values("v")),
        )
        .values_list(
            "updated_at",
            "severity_id",
            "last_entry",
            "last_review",
            "review_count",
            "last_item",
            "item_count",
            "system_count",
            "system_ids",
            "system_rtos",
        )
        .get()
    )
    parts = [_template_fingerprint(), kinds_key(kinds), *map(str, row)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def latest_render(*, incident: Incident, kinds: list[str]) -> ReportRender | None:
    return (
        ReportRender.objects.filter(incident=incident, timeline_kinds=kinds_key(kinds))
        .order_by("-requested_at", "-id")
        .first()
    )


def latest_done_render(*, incident: Incident, kinds: list[str]) -> ReportRender | None:
    return (
        ReportRender.objects.filter(incident=incident, timeline_kinds=kinds_key(kinds), state=ReportRender.State.DONE)
        .order_by("-rendered_at", "-id")
        .first()
    )


@dataclass(frozen=True)
class PdfStatus:
    """What the report page and the download say about the stored PDF of one report variant."""

    done: ReportRender | None  # the newest stored PDF
    in_flight: ReportRender | None  # a render queued or running
    failed: ReportRender | None  # the newest attempt, if it failed
    current: bool  # the stored PDF matches the data as it is now
    source_key: str


def pdf_status(*, incident: Incident, kinds: list[str]) -> PdfStatus:
    key = report_source_key(incident_id=incident.pk, kinds=kinds)
    renders = list(
        ReportRender.objects.filter(incident=incident, timeline_kinds=kinds_key(kinds)).order_by(
            "-requested_at", "-id"
        )[:10]
    )
    done = max(
        (r for r in renders if r.state == ReportRender.State.DONE),
        key=lambda r: (r.rendered_at, r.pk),
        default=None,
    )
    in_flight = next(
        (r for r in renders if r.state in (ReportRender.State.PENDING, ReportRender.State.RENDERING)), None
    )
    failed = renders[0] if renders and renders[0].state == ReportRender.State.FAILED else None
    return PdfStatus(
        done=done,
        in_flight=in_flight,
        failed=failed,
        current=done is not None and done.source_key == key,
        source_key=key,
    )


# -- the report's content -----------------------------------------------------------------------


@dataclass(frozen=True)
class SystemRecovery:
    system: System
    recovery: timedelta | None
    # When the incident manager was paged for this system's RTO (the escalation engine's
    # rto_breach rule); None when the system was restored in time or the page never went out.
    paged_at: datetime | None = None

    @property
    def breached(self) -> bool:
        return self.recovery is not None and self.recovery > self.system.rto

    @property
    def rto_label(self) -> str:
        return format_duration(self.system.rto)

    @property
    def over(self) -> timedelta | None:
        return self.recovery - self.system.rto if self.breached else None


@dataclass(frozen=True)
class TimelineRow:
    time: str
    kind: str
    action: str
    owner: str


def measured_recovery(incident: Incident) -> timedelta | None:
    """Start of the problem to its end (or resolution): the seed's 'Recovery Time'."""
    end = incident.ended_at or incident.resolved_at
    return end - incident.started_at if end else None


# -- the review's deadline ----------------------------------------------------------------------

# While an incident is in these states it owes its post-incident review.
AWAITING_REVIEW = (State.RESOLVED, State.IN_REVIEW)


def _approved_since_resolution() -> Subquery:
    return Subquery(
        PostIncidentReview.objects.filter(
            incident=OuterRef("pk"),
            state=PostIncidentReview.State.APPROVED,
            approved_at__gte=OuterRef("resolved_at"),
        )
        .order_by("approved_at")
        .values("approved_at")[:1]
    )


def review_approved_at(incident: Incident) -> datetime | None:
    """When a review was first approved since the incident's (latest) resolution: the review
    phase's end (the core's hooks.review_done_at)."""
    if incident.resolved_at is None:
        return None
    if hasattr(incident, "approved_since_resolution"):  # annotated by a list: no query per row
        return incident.approved_since_resolution
    return Incident.objects.filter(pk=incident.pk).values_list(_approved_since_resolution(), flat=True).get()


def review_target() -> PhaseTarget | None:
    return PhaseTarget.objects.filter(phase=PhaseTarget.Phase.REVIEW).first()


def review_deadline(incident: Incident) -> Clock | None:
    """The review phase's clock: due the review target after resolution (72 h seeded)."""
    return review_clock(incident, review_target())


def review_due_at(incident: Incident) -> datetime | None:
    clock = review_deadline(incident)
    return clock.due_at if clock is not None else None


def review_owed(incident: Incident) -> Clock | None:
    """The review clock while the incident still owes its review (resolved or in review, no
    review approved since, not a drill: drills get no review reminders either), else None."""
    if incident.is_drill or incident.state not in AWAITING_REVIEW:
        return None
    clock = review_deadline(incident)
    return clock if clock is not None and clock.done_at is None else None


def review_overdue(incident: Incident) -> Clock | None:
    """The owed review's clock once it is due (the moment its "now due" reminder fires): the
    overdue warning on the review, incident and reviews pages. None otherwise."""
    clock = review_owed(incident)
    return clock if clock is not None and clock.status == "overdue" else None


def review_overdue_context(incident: Incident) -> dict:
    """The incident page's part (hooks.incident_page_context)."""
    return {"review_overdue": review_overdue(incident)}


def reviews_awaited() -> list[dict]:
    """Incidents that owe a post-incident review, soonest due first, each with its clock and
    newest revision (the reviews list)."""
    incidents = list(
        report_incidents()
        .filter(state__in=AWAITING_REVIEW, is_drill=False, resolved_at__isnull=False)
        .annotate(approved_since_resolution=_approved_since_resolution())
        .filter(approved_since_resolution__isnull=True)
        .order_by("resolved_at", "id")
    )
    target = review_target()
    newest: dict[int, PostIncidentReview] = {}
    for review in (
        PostIncidentReview.objects.filter(incident__in=[i.pk for i in incidents])
        .select_related("author")
        .defer("frozen_html")
        .order_by("incident_id", "revision")
    ):
        newest[review.incident_id] = review
    return [
        {"incident": incident, "clock": review_clock(incident, target), "review": newest.get(incident.pk)}
        for incident in incidents
    ]


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _person(first: str | None, last: str | None, username: str | None) -> str:
    full = f"{first or ''} {last or ''}".strip()
    return full or username or ""


def timeline_rows(incident: Incident, kinds: list[str]) -> list[TimelineRow]:
    # values_list, not model instances: a 2,000-entry timeline is the report's bulk.
    qs = TimelineEntry.objects.filter(incident=incident)
    if kinds:
        qs = qs.filter(kind__in=kinds)
    rows = []
    for occurred, kind, action, team, first, last, username in qs.order_by("occurred_at", "id").values_list(
        "occurred_at", "kind", "action", "owner_team", "owner__first_name", "owner__last_name", "owner__username"
    ):
        rows.append(
            TimelineRow(
                time=occurred.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                kind=KIND_LABELS.get(kind, kind),
                action=action,
                owner=_person(first, last, username) or team or "System",
            )
        )
    return rows


def report_text(incident: Incident, review: PostIncidentReview | None) -> dict[str, str]:
    """The report template's text: the revision's, falling back to what responders recorded."""
    return {
        name: ((getattr(review, name) if review is not None else "") or getattr(incident, name) or "").strip()
        for name in REPORT_TEXT_FIELDS
    }


def report_incidents() -> QuerySet[Incident]:
    return Incident.objects.select_related("severity", "commander", "reported_by", "acknowledged_by").prefetch_related(
        # With their RPO class, for the recovery points section.
        Prefetch("affected_systems", queryset=System.objects.select_related("rpo_class"))
    )


def report_incident(incident_id: int) -> Incident:
    return report_incidents().get(pk=incident_id)


def report_context(
    *,
    incident: Incident,
    review: PostIncidentReview | None,
    kinds: list[str],
    generated_at: datetime,
    content_sha256: str = "",
) -> dict:
    """Everything templates/reports/report.html shows (the page preview and the PDF alike)."""
    recovery = measured_recovery(incident)
    rto_pages = dict(
        EscalationEvent.objects.filter(incident=incident, rule__startswith=RTO_RULE_PREFIX).values_list(
            "rule", "fired_at"
        )
    )
    systems = [
        SystemRecovery(system=s, recovery=recovery, paged_at=rto_pages.get(f"{RTO_RULE_PREFIX}{s.key}"))
        for s in incident.affected_systems.all()
    ]
    state_label = "Approved" if review is not None and review.state == PostIncidentReview.State.APPROVED else "Draft"
    return {
        "incident": incident,
        "review": review,
        "text": report_text(incident, review),
        "systems": systems,
        "breaches": sum(1 for s in systems if s.breached),
        "recovery": recovery,
        "response_clock": response_clock(incident),
        "phase_clocks": phase_clocks(incident, phase_targets()),
        "review_due_at": review_due_at(incident),
        "escalations": list(
            EscalationEvent.objects.filter(incident=incident).select_related("target_user").order_by("fired_at", "id")
        ),
        "obligations": list(
            RegulatoryObligation.objects.filter(incident=incident)
            .select_related("category", "regime", "stage", "submitted_by", "signed_off_by")
            .order_by("due_at")
        ),
        "timeline": timeline_rows(incident, kinds),
        "kinds_label": ", ".join(KIND_LABELS[k] for k in kinds) if kinds else "all kinds",
        "action_items": list(
            ActionItem.objects.filter(incident=incident).select_related("owner").order_by("due_date", "id")
        ),
        "report_state": state_label,
        "classification": f"Sev{incident.severity.level} {incident.severity.name} · "
        f"{incident.get_category_display()} · {CLASSIFICATION}" + (" · DRILL" if incident.is_drill else ""),
        "generated_at": generated_at,
        "generated_label": _utc(generated_at),
        "content_sha256": content_sha256,
        "site_url": settings.TMT_SITE_URL.rstrip("/"),
        **recovery_selectors.incident_report_context(incident),
    }


# -- reminders (called by the escalation engine's review handler) -------------------------------


@dataclass(frozen=True)
class Reminder:
    user: object | None
    summary: str
    label: str


def _name(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "nobody"


def _incident_manager():
    return role_contact(INCIDENT_MANAGER)


def follow_up_reminder(*, deadline, incident: Incident, now: datetime) -> Reminder | None:
    """Whom a review / action-item deadline reminds, and what it says; None if it no longer applies."""
    if deadline.rule.startswith(REVIEW_RULE_PREFIX):
        return _review_reminder(deadline, incident)
    if deadline.rule.startswith(ACTION_RULE_PREFIX):
        return _action_item_reminder(deadline, incident, now)
    return None


def _review_reminder(deadline, incident: Incident) -> Reminder | None:
    owed = review_owed(incident)
    if owed is None:
        return None
    due_label = _utc(owed.due_at)
    open_review = (
        PostIncidentReview.objects.filter(incident=incident, state__in=PostIncidentReview.OPEN_STATES)
        .select_related("author")
        .first()
    )
    where = f"r{open_review.revision} is {open_review.get_state_display().lower()}" if open_review else "not started"
    if deadline.step == 3:
        manager = _incident_manager()
        return Reminder(
            user=manager,
            summary=(
                f"Post-incident review overdue (was due {due_label}; {where}): "
                f"escalated to the incident manager {_name(manager)}"
            ),
            label="incident manager",
        )
    user = open_review.author if open_review else incident.commander
    if user is None:
        user = _incident_manager()
    verb = "due " + due_label if deadline.step == 1 else f"now due ({due_label})"
    return Reminder(
        user=user, summary=f"Post-incident review {verb}, {where}: reminder to {_name(user)}", label="review author"
    )


def _action_item_reminder(deadline, incident: Incident, now: datetime) -> Reminder | None:
    # rule = "action:<pk>:<due date>": a rescheduled item gets new rules, the old ones lapse.
    try:
        _, pk, due_iso = deadline.rule.split(":", 2)
        item = ActionItem.objects.select_related("owner").get(pk=int(pk))
    except (ValueError, ActionItem.DoesNotExist):
        return None
    if not item.is_active or item.due_date.isoformat() != due_iso:
        return None
    what = f"“{item.title[:120]}” ({item.get_kind_display().lower()}, owner {_name(item.owner)})"
    if deadline.step == 1:
        return Reminder(
            user=item.owner, summary=f"Action item due {item.due_date:%Y-%m-%d}: {what}", label="action item owner"
        )
    if deadline.step == 2:
        return Reminder(
            user=item.owner,
            summary=f"Action item overdue since {item.due_date:%Y-%m-%d}: {what}",
            label="action item owner",
        )
    manager = _incident_manager()
    return Reminder(
        user=manager,
        summary=(
            f"Action item still open {(now.date() - item.due_date).days} "
            f"days after its due date: {what}; escalated to {_name(manager)}"
        ),
        label="incident manager",
    )


# -- action items ---------------------------------------------------------------------------------


def action_item_changeable_by(item: ActionItem, user) -> bool:
    """Its owner moves an item along (start, done, won't do, reschedule); so does any responder
    (reports.change_actionitem). The pages and the API ask this, through the services."""
    return item.owner_id == user.pk or user.has_perm("reports.change_actionitem")


def my_action_items(user) -> QuerySet[ActionItem]:
    return (
        ActionItem.objects.filter(owner=user)
        .select_related("incident__severity")
        # Active ones (open, in progress) first, each group by due date.
        .order_by(Case(When(state__in=ActionItem.ACTIVE_STATES, then=0), default=1), "due_date", "id")
    )


# -- metrics ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date  # first day of the first month
    end: date  # first day of the month after the last

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, 1, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, 1, tzinfo=UTC)

    @property
    def months(self) -> list[date]:
        out, day = [], self.start
        while day < self.end:
            out.append(day)
            day = add_months(day, 1)
        return out


def add_months(day: date, n: int) -> date:
    month = day.month - 1 + n
    return date(day.year + month // 12, month % 12 + 1, 1)


def default_period(today: date) -> Period:
    this_month = today.replace(day=1)
    return Period(start=add_months(this_month, -11), end=add_months(this_month, 1))


def real_incidents(period: Period) -> QuerySet[Incident]:
    """Incidents that count: drills and exercises are excluded from every figure."""
    return Incident.objects.filter(is_drill=False, detected_at__gte=period.start_at, detected_at__lt=period.end_at)


def _minutes(value: timedelta | None) -> float | None:
    return round(value.total_seconds() / 60, 1) if value is not None else None


def mttx_by_month(period: Period) -> list[dict]:
    rows = (
        real_incidents(period)
        .annotate(month=TruncMonth("detected_at", tzinfo=UTC))
        .values("month", "severity__level")
        .annotate(
            incidents=Count("id"),
            acknowledged=Count("id", filter=Q(acknowledged_at__isnull=False)),
            resolved=Count("id", filter=Q(resolved_at__isnull=False)),
            mtta=Avg(F("acknowledged_at") - F("detected_at"), filter=Q(acknowledged_at__isnull=False)),
            mttr=Avg(F("resolved_at") - F("detected_at"), filter=Q(resolved_at__isnull=False)),
        )
        .order_by("month", "severity__level")
    )
    return [
        {
            "month": (r["month"].date() if isinstance(r["month"], datetime) else r["month"]).replace(day=1),
            "level": r["severity__level"],
            "incidents": r["incidents"],
            "acknowledged": r["acknowledged"],
            "resolved": r["resolved"],
            "mtta_min": _minutes(r["mtta"]),
            "mttr_min": _minutes(r["mttr"]),
        }
        for r in rows
    ]


def mttx_by_severity(period: Period) -> list[dict]:
    figures = dict(
        (r["severity__level"], r)
        for r in real_incidents(period)
        .values("severity__level")
        .annotate(
            incidents=Count("id"),
            mtta=Avg(F("acknowledged_at") - F("detected_at"), filter=Q(acknowledged_at__isnull=False)),
            mttr=Avg(F("resolved_at") - F("detected_at"), filter=Q(resolved_at__isnull=False)),
        )
        .order_by()
    )
    out = []
    for level in SeverityLevel.objects.order_by("level"):
        r = figures.get(level.level, {})
        out.append(
            {
                "severity": level,
                "incidents": r.get("incidents", 0),
                "mtta_min": _minutes(r.get("mtta")),
                "mttr_min": _minutes(r.get("mttr")),
            }
        )
    return out


def sla_compliance(period: Period) -> list[dict]:
    """Acknowledged within the response time frozen at open (met), after it or never (missed).

    Still-unacknowledged incidents whose time has not run out, and false alarms cancelled before
    it did, are not counted either way.
    """
    levels = list(SeverityLevel.objects.order_by("level"))
    # "Next business day" needs the holidays: load the period's once, not once per incident.
    holidays = set(
        BusinessHoliday.objects.filter(
            date__gte=period.start - timedelta(days=1), date__lte=period.end + timedelta(days=60)
        ).values_list("date", flat=True)
    )
    counts = {lv.level: {"met": 0, "missed": 0} for lv in levels}
    now = timezone.now()
    rows = real_incidents(period).values_list(
        "severity__level", "detected_at", "acknowledged_at", "cancelled_at", "escalation_snapshot__severities"
    )
    live = {lv.level: lv for lv in levels}
    for level, detected, acked, cancelled, frozen in rows:
        policy_row = (frozen or {}).get(str(level)) if isinstance(frozen, dict) else None
        if policy_row is None:
            lv = live.get(level)
            policy_row = {
                "response_s": lv.response_time.total_seconds() if lv and lv.response_time else None,
                "next_business_day": bool(lv and lv.response_next_business_day),
            }
        if policy_row.get("next_business_day"):
            due = _next_business_day_start(detected, holidays)
        elif policy_row.get("response_s") is not None:
            due = detected + timedelta(seconds=policy_row["response_s"])
        else:
            continue
        bucket = counts.setdefault(level, {"met": 0, "missed": 0})
        # The incident page's clock rules, so the figures and the pages agree at the due moment.
        if acked is not None:
            bucket["met" if done_in_time(acked, due) else "missed"] += 1
        elif cancelled is not None and done_in_time(cancelled, due):
            continue
        elif is_overdue(due, cancelled or now):
            bucket["missed"] += 1
    out = []
    for lv in levels:
        c = counts[lv.level]
        total = c["met"] + c["missed"]
        out.append(
            {
                "severity": lv,
                "target": lv.response_time_label,
                "met": c["met"],
                "missed": c["missed"],
                "compliance_pct": round(100 * c["met"] / total, 1) if total else None,
            }
        )
    return out


def _next_business_day_start(after: datetime, holidays: set[date]) -> datetime:
    """incidents.business_days.next_business_day_start, with the holidays already loaded."""
    zone = ZoneInfo(settings.TMT_BUSINESS_TIME_ZONE)
    day = after.astimezone(zone).date() + timedelta(days=1)
    while day.weekday() >= 5 or day in holidays:
        day += timedelta(days=1)
    return datetime.combine(day, settings.TMT_BUSINESS_DAY_OPENS, tzinfo=zone)


def rto_breaches(period: Period) -> list[dict]:
    """Per system: resolved incidents that affected it, and how many took longer than its RTO."""
    through = Incident.affected_systems.through
    recovery = ExpressionWrapper(
        Coalesce(F("incident__ended_at"), F("incident__resolved_at")) - F("incident__started_at"),
        output_field=DurationField(),
    )
    figures = {
        r["system_id"]: r
        for r in through.objects.filter(
            incident__in=real_incidents(period).filter(resolved_at__isnull=False).values("pk")
        )
        .annotate(recovery=recovery)
        .values("system_id")
        .annotate(
            incidents=Count("id"),
            breaches=Count("id", filter=Q(recovery__gt=F("system__rto"))),
            worst=Max("recovery"),
            total=Sum("recovery"),
        )
        .order_by()
    }
    out = []
    for system in System.objects.order_by("tier", "rto", "name"):
        r = figures.get(system.pk, {})
        out.append(
            {
                "system": system,
                "rto_label": format_duration(system.rto),
                "incidents": r.get("incidents", 0),
                "breaches": r.get("breaches", 0),
                "worst": r.get("worst"),
            }
        )
    return out


def by_detection_method(period: Period) -> list[dict]:
    counts = dict(
        real_incidents(period)
        .values("detection_method")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("detection_method", "n")
    )
    return [
        {"method": value, "label": label, "incidents": counts.get(value, 0)} for value, label in DetectionMethod.choices
    ]


def metrics(period: Period) -> dict:
    by_month = mttx_by_month(period)
    levels = list(SeverityLevel.objects.order_by("level").values_list("level", flat=True))
    months = period.months
    index = {(r["month"], r["level"]): r for r in by_month}
    chart = {
        "months": [f"{calendar.month_abbr[m.month]} {m.year}" for m in months],
        "mtta": {str(lv): [index.get((m, lv), {}).get("mtta_min") for m in months] for lv in levels},
        "mttr": {str(lv): [index.get((m, lv), {}).get("mttr_min") for m in months] for lv in levels},
    }
    sla = sla_compliance(period)
    rto = rto_breaches(period)
    detection = by_detection_method(period)
    chart["sla"] = {
        "labels": [f"Sev{r['severity'].level}" for r in sla],
        "met": [r["met"] for r in sla],
        "missed": [r["missed"] for r in sla],
    }
    chart["rto"] = {
        "labels": [r["system"].name for r in rto],
        "breaches": [r["breaches"] for r in rto],
        "within": [r["incidents"] - r["breaches"] for r in rto],
    }
    chart["detection"] = {"labels": [r["label"] for r in detection], "counts": [r["incidents"] for r in detection]}
    return {
        "period": period,
        "by_month": by_month,
        "by_severity": mttx_by_severity(period),
        "sla": sla,
        "rto": rto,
        "detection": detection,
        "drills_excluded": Incident.objects.filter(
            is_drill=True, detected_at__gte=period.start_at, detected_at__lt=period.end_at
        ).count(),
        "chart": chart,
    }
