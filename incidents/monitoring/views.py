"""The health page (agents and the portal's own infrastructure) and the trading emergency stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from incidents.models import OPEN_STATES, Incident
from incidents.monitoring import emergency
from incidents.monitoring import services as health
from incidents.monitoring.models import (
    VIEW_EMERGENCY_STOPS_PERMISSION,
    VIEW_HEALTH_PERMISSION,
    EmergencyStop,
    HealthSample,
    HealthTarget,
    StopReason,
)

SPARKLINE_SAMPLES = 40
SPARK_WIDTH = 160
SPARK_HEIGHT = 28
PANEL_REFRESH_SECONDS = 5


# -- reads for the health page (a constant number of queries, however many targets) -----------


@dataclass
class Sparkline:
    points: str = ""  # SVG polyline points of the successful checks' latency
    failures: list[tuple[float, float]] = field(default_factory=list)  # x, y of failed checks
    threshold_y: float | None = None
    max_ms: float = 0.0
    count: int = 0


@dataclass
class TargetRow:
    target: HealthTarget
    sparkline: Sparkline
    uptime_24h: float | None
    uptime_7d: float | None
    incident: Incident | None


def _sparkline(samples: list[tuple[datetime, bool, float | None]], threshold_ms: float) -> Sparkline:
    """Latency of the last checks, oldest on the left; failures as red dots on the top edge."""
    if not samples:
        return Sparkline()
    samples = sorted(samples, key=lambda s: s[0])
    top = max([threshold_ms * 1.25, *[lat for _, ok, lat in samples if ok and lat is not None]])
    step = SPARK_WIDTH / max(1, SPARKLINE_SAMPLES - 1)
    offset = SPARK_WIDTH - step * (len(samples) - 1)
    pad = 3

    def y(ms: float) -> float:
        return round(SPARK_HEIGHT - pad - (SPARK_HEIGHT - 2 * pad) * min(ms, top) / top, 1)

    points, failures = [], []
    for index, (_, ok, latency) in enumerate(samples):
        x = round(offset + index * step, 1)
        if ok and latency is not None:
            points.append(f"{x},{y(latency)}")
        else:
            failures.append((x, pad))
    return Sparkline(
        points=" ".join(points), failures=failures, threshold_y=y(threshold_ms), max_ms=top, count=len(samples)
    )


def health_overview(*, now: datetime | None = None) -> list[TargetRow]:
    now = now or timezone.now()
    targets = list(HealthTarget.objects.select_related("system").order_by("system__tier", "system__rto", "name"))
    ids = [t.pk for t in targets]
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    # The last N samples of every target in one query (a window function, not N queries).
    recent: dict[int, list] = {pk: [] for pk in ids}
    for target_id, checked_at, ok, latency in (
        HealthSample.objects.filter(target_id__in=ids, checked_at__gte=day)
        .annotate(rank=Window(RowNumber(), partition_by=[F("target_id")], order_by=F("checked_at").desc()))
        .filter(rank__lte=SPARKLINE_SAMPLES)
        .values_list("target_id", "checked_at", "ok", "latency_ms")
    ):
        recent[target_id].append((checked_at, ok, latency))
    uptime = {
        row["target_id"]: row
        for row in HealthSample.objects.filter(target_id__in=ids, checked_at__gte=week)
        .values("target_id")
        .annotate(
            week_total=Count("id"),
            week_ok=Count("id", filter=Q(ok=True)),
            day_total=Count("id", filter=Q(checked_at__gte=day)),
            day_ok=Count("id", filter=Q(ok=True, checked_at__gte=day)),
        )
    }
    incidents = {
        i.automated_system_id: i
        for i in Incident.objects.filter(
            state__in=OPEN_STATES, automated_system_id__in={t.system_id for t in targets}
        ).select_related("severity")
    }

    def pct(ok: int, total: int) -> float | None:
        return round(100 * ok / total, 2) if total else None

    rows = []
    for target in targets:
        u = uptime.get(target.pk, {})
        rows.append(
            TargetRow(
                target=target,
                sparkline=_sparkline(recent[target.pk], target.latency_threshold_ms),
                uptime_24h=pct(u.get("day_ok", 0), u.get("day_total", 0)),
                uptime_7d=pct(u.get("week_ok", 0), u.get("week_total", 0)),
                incident=incidents.get(target.system_id),
            )
        )
    return rows


def _panel_context() -> dict:
    now = timezone.now()
    heartbeats = health.heartbeat_status(now=now)
    database = health.database_check()
    broker = health.broker_check(timeout=1.0)
    alerts = []
    if not database.ok:
        alerts.append(f"The portal's own database does not answer: {database.detail}")
    if not broker.ok:
        alerts.append(f"The portal's own message broker does not answer: {broker.detail}")
    duties = health.duty_status(now=now)
    for duty in duties:
        if not duty.alive:
            when = f"last done {duty.age_s:.0f} s ago" if duty.age_s is not None else "never done yet"
            alerts.append(f"{duty.label} has stopped ({when}): {duty.consequence}.")
    beat = heartbeats.beat
    if beat is None:
        alerts.append("No heartbeat from Celery beat yet: health checks and reminders are not scheduled.")
    elif not beat.alive:
        alerts.append(
            f"Celery beat is silent (last heartbeat {beat.age_s:.0f} "
            "s ago): health checks and reminders are not scheduled."
        )
    if heartbeats.live_workers == 0:
        alerts.append("No live Celery worker: health checks and reports are not processed.")
    return {
        "rows": health_overview(now=now),
        "heartbeats": heartbeats,
        "duties": duties,
        "duty_stale_s": settings.TMT_DUTY_STALE_SECONDS,
        "infra_checks": [database, broker],
        "alerts": alerts,
        "now": now,
        "refresh_seconds": PANEL_REFRESH_SECONDS,
    }


@require_GET
@permission_required(VIEW_HEALTH_PERMISSION, raise_exception=True)
def health_page(request: HttpRequest) -> HttpResponse:
    context = _panel_context()
    context["recent_stops"] = (
        list(EmergencyStop.objects.select_related("incident", "requested_by").order_by("-requested_at")[:5])
        if request.user.has_perm(VIEW_EMERGENCY_STOPS_PERMISSION)
        else []
    )
    return render(request, "monitoring/health.html", context)


@require_GET
@permission_required(VIEW_HEALTH_PERMISSION, raise_exception=True)
def health_panel(request: HttpRequest) -> HttpResponse:
    """The part of the page htmx refreshes every few seconds."""
    return render(request, "monitoring/_health_panel.html", _panel_context())


# -- the emergency stop ---------------------------------------------------------------------------


class EmergencyStopForm(forms.Form):
    reason_code = forms.ChoiceField(
        label="Trigger condition",
        choices=StopReason.choices,
        initial=StopReason.SYSTEM_EMERGENCY,
        required=False,
        help_text="Sent to the circuit breaker as the stop's reason code.",
        error_messages={"invalid_choice": "Choose one of the trigger conditions."},
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=emergency.MAX_REASON_LENGTH,
        help_text="Recorded on the incident and sent to the circuit breaker.",
        error_messages={"required": "Give the reason for stopping trading."},
    )
    stop_all_trading = forms.BooleanField(label="Stop all trading", required=False, initial=True)
    incident = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)
    confirm = forms.BooleanField(
        label="I confirm: halt trading now",
        error_messages={"required": "Tick the box to confirm the emergency stop."},
    )

    def clean_reason_code(self) -> str:
        # Left out (a script, an old form): the seed's own code.
        return self.cleaned_data.get("reason_code") or StopReason.SYSTEM_EMERGENCY

    def clean_incident(self) -> Incident | None:
        reference = self.cleaned_data.get("incident", "").strip()
        if not reference:
            return None
        incident = Incident.objects.filter(reference=reference).first()
        if incident is None:
            raise forms.ValidationError(f"No incident {reference}; clear it to open a new Sev1 incident.")
        return incident


@permission_required(emergency.PERMISSION, raise_exception=True)
def emergency_stop(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = EmergencyStopForm(request.POST)
        if form.is_valid():
            try:
                stop = emergency.emergency_stop_trigger(
                    user=request.user,
                    reason=form.cleaned_data["reason"],
                    reason_code=form.cleaned_data["reason_code"],
                    stop_all_trading=form.cleaned_data["stop_all_trading"],
                    incident=form.cleaned_data["incident"],
                )
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                # Redirect, so reloading the result page can never send a second stop.
                return redirect("incidents:emergency_stop_detail", stop_id=stop.pk)
        linked = form.cleaned_data.get("incident") if hasattr(form, "cleaned_data") else None
    else:
        reference = request.GET.get("incident", "")[:40]
        linked = Incident.objects.filter(reference=reference).select_related("severity").first() if reference else None
        code = request.GET.get("reason_code", "")
        form = EmergencyStopForm(
            initial={
                "incident": linked.reference if linked else "",
                "reason_code": code if code in StopReason.values else StopReason.SYSTEM_EMERGENCY,
            }
        )
    return render(
        request,
        "monitoring/emergency_stop.html",
        {"form": form, "linked": linked, "agent_url": settings.TMT_CIRCUIT_BREAKER_URL},
        status=400 if form.errors else 200,
    )


@require_GET
@permission_required(VIEW_EMERGENCY_STOPS_PERMISSION, raise_exception=True)
def emergency_stop_detail(request: HttpRequest, stop_id: int) -> HttpResponse:
    stop = get_object_or_404(EmergencyStop.objects.select_related("incident__severity", "requested_by"), pk=stop_id)
    return render(
        request,
        "monitoring/emergency_stop.html",
        {"stop": stop, "succeeded": stop.outcome == EmergencyStop.Outcome.STOPPED},
    )
