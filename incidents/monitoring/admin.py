"""Admin for health targets (configuration), their samples and emergency stops (read-only), and
planned maintenance windows (announced on the public status page)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from incidents.admin import ReadOnlyAdmin
from incidents.monitoring import services as health
from incidents.monitoring.models import (
    DiagnosticProbe,
    EmergencyStop,
    HealthSample,
    HealthTarget,
    MaintenanceWindow,
    PositionClosure,
    ResumeRequest,
    SystemStateCapture,
    TradingHalt,
    WorkerHeartbeat,
)
from incidents.monitoring.poller import url_problem

# Kept by the poller, shown read-only.
HEALTH_STATE_FIELDS = [
    "state",
    "state_changed_at",
    "consecutive_failures",
    "consecutive_ok",
    "consecutive_slow",
    "consecutive_fast",
    "last_checked_at",
    "last_latency_ms",
    "last_error",
    "next_check_at",
]


class HealthTargetForm(forms.ModelForm):
    class Meta:
        model = HealthTarget
        fields = [
            "name",
            *health.PROBE_FIELDS,
            "system",
            "interval",
            "timeout",
            "failures_before_down",
            "latency_threshold_ms",
            "degraded_severity",
            "enabled",
        ]
        help_texts = {
            "interval": "How often to check, e.g. 00:00:10 for ten seconds (at least one second).",
            "timeout": "No answer within this counts as a failure; must be shorter than the interval.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Left out (a form or script from before kinds): an HTTP target, as every target was.
        self.fields["kind"].required = False

    def clean_kind(self) -> str:
        return self.cleaned_data.get("kind") or HealthTarget.Kind.HTTP

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if not url:
            return url  # required for HTTP only: the model's clean says so per kind
        problem = url_problem(url)
        if problem:
            reason = problem.removeprefix("invalid URL: ")
            raise forms.ValidationError(reason[0].upper() + reason[1:] + ".")
        return url

    def clean_timeout(self) -> timedelta:
        timeout = self.cleaned_data["timeout"]
        if timeout is not None and timeout <= timedelta(0):
            raise forms.ValidationError("The timeout must be positive.")
        return timeout


@admin.register(HealthTarget)
class HealthTargetAdmin(admin.ModelAdmin):
    form = HealthTargetForm
    fieldsets = [
        (None, {"fields": ["name", "kind", "system", "enabled"]}),
        ("HTTP", {"fields": ["url", "headers", "expected_status", "json_path", "json_expected", "body_pattern"]}),
        ("PostgreSQL, TCP, Redis", {"fields": ["host", "port", "database", "username", "password_env"]}),
        (
            "Polling",
            {
                "fields": [
                    "interval",
                    "timeout",
                    "failures_before_down",
                    "latency_threshold_ms",
                    "degraded_severity",
                ]
            },
        ),
        ("Current state", {"fields": HEALTH_STATE_FIELDS}),
    ]
    list_display = [
        "name",
        "kind",
        "system",
        "endpoint",
        "state_badge",
        "last_checked_at",
        "last_latency",
        "last_error",
        "enabled",
    ]
    list_filter = ["kind", "state", "enabled", "system"]
    list_select_related = ["system"]
    search_fields = ["name", "url", "host", "system__name"]
    readonly_fields = HEALTH_STATE_FIELDS
    actions = ["check_now"]

    class Media:
        css = {"all": ["css/admin.css"]}

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: HealthTarget) -> str:
        # A class, not a style attribute: the Content-Security-Policy allows no inline style.
        return format_html('<strong class="health-text-{}">{}</strong>', obj.state, obj.get_state_display())

    @admin.display(description="latency", ordering="last_latency_ms")
    def last_latency(self, obj: HealthTarget) -> str:
        return "—" if obj.last_latency_ms is None else f"{obj.last_latency_ms:,.0f} ms"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        # A new URL or interval is checked on the next sweep, not after the old interval.
        health.health_targets_check_now(targets=[obj])

    @admin.action(description="Check now (on the next sweep)")
    def check_now(self, request, queryset) -> None:
        count = health.health_targets_check_now(targets=queryset)
        self.message_user(request, f"{count} target(s) will be checked on the next sweep.", messages.SUCCESS)


@admin.register(HealthSample)
class HealthSampleAdmin(ReadOnlyAdmin):
    list_display = ["checked_at", "target", "ok", "latency_ms", "status_code", "error"]
    list_filter = ["ok", "target"]
    list_select_related = ["target"]
    date_hierarchy = "checked_at"
    ordering = ["-checked_at", "-id"]
    show_full_result_count = False


@admin.register(EmergencyStop)
class EmergencyStopAdmin(ReadOnlyAdmin):
    list_display = ["requested_at", "requested_by", "outcome", "incident", "agent_url", "short_reason"]
    list_filter = ["outcome"]
    list_select_related = ["requested_by", "incident"]
    search_fields = ["reason", "incident__reference", "requested_by__username"]
    date_hierarchy = "requested_at"
    ordering = ["-requested_at"]

    @admin.display(description="reason")
    def short_reason(self, obj: EmergencyStop) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"


class MaintenanceWindowForm(forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = ["title", "description", "systems", "starts_at", "ends_at"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    form = MaintenanceWindowForm
    list_display = ["title", "starts_at", "ends_at", "created_by"]
    list_select_related = ["created_by"]
    filter_horizontal = ["systems"]
    search_fields = ["title", "description"]
    date_hierarchy = "starts_at"
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "seen_at", "silent_for"]
    list_filter = ["kind"]
    search_fields = ["name"]
    ordering = ["kind", "name"]

    @admin.display(description="silent for")
    def silent_for(self, obj: WorkerHeartbeat) -> str:
        seconds = max(0, int((timezone.now() - obj.seen_at).total_seconds()))
        return (
            f"{seconds // 60}m {seconds % 60:02d}s"
            if seconds < 3600
            else f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        )


@admin.register(DiagnosticProbe)
class DiagnosticProbeAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "order", "target", "timeout_s"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled", "order"]
    search_fields = ["name", "url", "host", "path"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "order", "timeout_s"]}),
        ("HTTP", {"fields": ["url", "headers"]}),
        ("PostgreSQL, TCP, TLS", {"fields": ["host", "port", "database", "username", "password_env"]}),
        ("Log tail, host resources", {"fields": ["path", "lines"]}),
    ]

    @admin.display(description="target")
    def target(self, obj: DiagnosticProbe) -> str:
        return obj.url or (f"{obj.host}:{obj.port or ''}" if obj.host else obj.path)


@admin.register(TradingHalt)
class TradingHaltAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "started_by", "reason_code", "incident", "ended_at", "ending", "resumed_by"]
    list_filter = ["reason_code", "ending"]
    list_select_related = ["started_by", "incident", "resumed_by"]
    date_hierarchy = "started_at"


@admin.register(ResumeRequest)
class ResumeRequestAdmin(ReadOnlyAdmin):
    list_display = ["requested_at", "requested_by", "state", "approved_by", "approved_at", "halt"]
    list_filter = ["state"]
    list_select_related = ["requested_by", "approved_by", "halt"]


@admin.register(PositionClosure)
class PositionClosureAdmin(ReadOnlyAdmin):
    list_display = ["closed_at", "halt", "none_open", "instrument", "venue", "quantity", "closed_by"]
    list_select_related = ["halt", "closed_by"]


@admin.register(SystemStateCapture)
class SystemStateCaptureAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "incident", "requested_by", "completed_at", "evidence"]
    list_select_related = ["incident", "requested_by", "evidence"]
