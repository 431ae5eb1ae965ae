"""Alert integrations (monitoring sources posting to /api/v1/alerts/) and the alerts they sent.

An integration's token is issued when it is added and shown once, on a page of its own (only its
hash is stored; a flash message would keep it in a cookie or the session); "rotate" replaces a
leaked one, "revoke" retires the integration for good. The label maps are checked against the
systems and severity levels that exist, so a typo is an error on the form rather than alerts
silently opening incidents with no system.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from incidents.admin import ReadOnlyAdmin
from incidents.api.admin_tokens import token_once_response
from incidents.api.models import AlertEvent, AlertIntegration, IdempotencyKey
from incidents.api.services.alerts import alert_integration_revoke, alert_integration_rotate_token
from incidents.api.services.api_tokens import alert_integration_issue_token
from incidents.models import SeverityLevel, System


def _label_map(value, *, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValidationError(f'Enter a JSON object of label value → {what}, e.g. {{"cb": …}}.')
    bad_keys = [k for k in value if not str(k).strip()]
    if bad_keys:
        raise ValidationError("Label values must not be empty.")
    return value


class AlertIntegrationForm(forms.ModelForm):
    reporter = forms.ModelChoiceField(
        # Service accounts only (no login): timeline entries written for an integration must not
        # appear signed by a person, say the CEO, who never wrote them.
        queryset=get_user_model()
        .objects.filter(Q(is_active=False) | Q(password__startswith=UNUSABLE_PASSWORD_PREFIX))
        .order_by("username"),
        help_text="The service account automated incidents are opened as: a user who cannot log in "
        "(inactive, or without a usable password).",
    )
    default_severity = forms.TypedChoiceField(coerce=int, help_text="For alerts whose severity label is not mapped.")

    class Meta:
        model = AlertIntegration
        fields = [
            "name",
            "kind",
            "reporter",
            "system_label",
            "system_map",
            "severity_label",
            "severity_map",
            "default_severity",
            "active",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.levels = {s.level: s for s in SeverityLevel.objects.order_by("level")}
        self.fields["default_severity"].choices = [(level, s.label) for level, s in self.levels.items()]

    def clean_system_map(self) -> dict:
        value = _label_map(self.cleaned_data["system_map"], what="system key")
        known = set(System.objects.values_list("key", flat=True))
        unknown = sorted({str(v) for v in value.values()} - known)
        if unknown:
            raise ValidationError(f"No system with key {', '.join(unknown)}. Known keys: {', '.join(sorted(known))}.")
        return value

    def clean_severity_map(self) -> dict:
        value = _label_map(self.cleaned_data["severity_map"], what="severity level")
        cleaned = {}
        for label, level in value.items():
            try:
                number = int(level)
            except (TypeError, ValueError):
                number = None
            if number not in self.levels:
                raise ValidationError(
                    f"“{label}” maps to {level!r}: use a severity level, one of {', '.join(map(str, self.levels))}."
                )
            cleaned[str(label)] = number
        return cleaned


@admin.register(AlertIntegration)
class AlertIntegrationAdmin(admin.ModelAdmin):
    form = AlertIntegrationForm
    list_display = ["name", "kind", "token_prefix", "reporter", "default_severity", "status", "created_at"]
    list_filter = ["kind", "active", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["reporter"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["token_prefix", "created_at", "revoked_at"]
    actions = ["rotate_token", "revoke"]

    def get_fields(self, request, obj=None):
        fields = list(self.form.Meta.fields)
        return fields if obj is None else [*fields, "token_prefix", "created_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        # A revoked integration is kept for its alerts' sake, as it was.
        if obj is not None and obj.revoked_at is not None:
            return [*self.form.Meta.fields, *self.readonly_fields]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, not deleted: its alerts name it

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        request._issued_integration_token = alert_integration_issue_token(integration=obj)  # never stored

    def response_add(self, request, obj, post_url_continue=None):
        return token_once_response(
            request,
            title=f"Alert integration “{obj.name}” created",
            tokens=[(obj.name, request._issued_integration_token)],
            back_url=reverse("admin:api_alertintegration_changelist"),
            note="Put it in the monitoring system's webhook configuration (Authorization: Bearer …).",
        )

    @admin.display(description="token")
    def token_prefix(self, obj: AlertIntegration) -> str:
        return f"{obj.prefix}…" if obj.prefix else "—"

    @admin.display(description="status")
    def status(self, obj: AlertIntegration) -> str:
        if obj.revoked_at:
            return f"revoked {timezone.localtime(obj.revoked_at):%Y-%m-%d %H:%M}"
        return "active" if obj.active else "paused"

    @admin.action(description="Rotate the token (the old one stops working)", permissions=["change"])
    def rotate_token(self, request, queryset):
        issued = []
        for integration in queryset:
            try:
                issued.append((integration.name, alert_integration_rotate_token(integration=integration)))
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
        if not issued:
            return None
        return token_once_response(
            request,
            title="New alert integration tokens",
            tokens=issued,
            back_url=reverse("admin:api_alertintegration_changelist"),
            note="The old tokens stopped working; update the monitoring systems' webhook configuration.",
        )

    @admin.action(description="Revoke (refuse its alerts for good)", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        count = sum(alert_integration_revoke(integration=integration) for integration in queryset)
        self.message_user(request, f"Revoked {count} integration(s).", messages.SUCCESS)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "integration", "status", "fingerprint", "summary", "incident"]
    list_filter = ["status", "integration"]
    list_select_related = ["integration", "incident"]
    search_fields = ["fingerprint", "summary", "incident__reference"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    # Counting every alert ever received on each page load is the slow part of a big table.
    show_full_result_count = False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "key", "incident"]
    list_select_related = ["user", "incident"]
    search_fields = ["key", "user__username", "incident__reference"]
    ordering = ["-created_at", "-id"]
