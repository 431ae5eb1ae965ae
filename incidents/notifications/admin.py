"""Admin for webhook endpoints and distribution lists, and the read-only outbox and its attempts."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from incidents.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    known_severity_level,
)
from incidents.notifications.models import (
    AckLink,
    DistributionList,
    Notification,
    NotificationAttempt,
    ProviderReply,
    WebhookEndpoint,
)


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "active", "max_severity_level"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if not url.lower().startswith(("https://", "http://")):
            raise ValidationError("Use an http:// or https:// address.")
        return url

    def clean(self):
        cleaned = super().clean()
        known_severity_level(self, "max_severity_level")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "url", "max_severity_level", "active"]
    list_editable = ["active"]
    list_filter = ["active", "max_severity_level"]
    search_fields = ["name", "url"]
    ordering = ["name"]


class DistributionListForm(forms.ModelForm):
    class Meta:
        model = DistributionList
        fields = ["name", "max_severity_level", "emails", "webhooks"]
        widgets = {"webhooks": forms.CheckboxSelectMultiple}

    def clean(self):
        cleaned = super().clean()
        known_severity_level(self, "max_severity_level")
        return cleaned


@admin.register(DistributionList)
class DistributionListAdmin(admin.ModelAdmin):
    form = DistributionListForm
    list_display = ["name", "max_severity_level", "recipient_count", "webhook_names"]
    list_filter = ["max_severity_level"]
    search_fields = ["name", "emails"]
    ordering = ["name"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("webhooks")

    @admin.display(description="email recipients")
    def recipient_count(self, obj: DistributionList) -> int:
        return len(obj.email_list)

    @admin.display(description="webhooks")
    def webhook_names(self, obj: DistributionList) -> str:
        return ", ".join(w.name for w in obj.webhooks.all()) or "—"


class NotificationAttemptInline(ReadOnlyInline):
    model = NotificationAttempt
    fields = ["attempted_at", "outcome", "detail"]
    readonly_fields = fields
    ordering = ["attempted_at", "id"]
    verbose_name_plural = "delivery attempts (append-only)"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "incident",
        "channel",
        "recipient",
        "address",
        "short_subject",
        "state",
        "attempts",
        "sent_at",
    ]
    list_filter = ["state", "channel", "incident__is_drill"]
    list_select_related = ["incident", "recipient"]
    search_fields = ["incident__reference", "address", "subject", "recipient__username"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    inlines = [NotificationAttemptInline]

    @admin.display(description="subject")
    def short_subject(self, obj: Notification) -> str:
        return obj.subject if len(obj.subject) <= 80 else obj.subject[:79] + "…"


@admin.register(NotificationAttempt)
class NotificationAttemptAdmin(ReadOnlyAdmin):
    list_display = ["attempted_at", "notification", "incident_reference", "outcome", "detail"]
    list_filter = ["outcome", "notification__channel"]
    list_select_related = ["notification__incident"]
    search_fields = ["notification__incident__reference", "notification__address", "detail"]
    date_hierarchy = "attempted_at"
    ordering = ["-attempted_at", "-id"]
    show_full_result_count = False

    @admin.display(description="incident", ordering="notification__incident__reference")
    def incident_reference(self, obj: NotificationAttempt) -> str:
        incident = obj.notification.incident
        return incident.reference if incident is not None else "—"  # a reminder: no incident


@admin.register(AckLink)
class AckLinkAdmin(ReadOnlyAdmin):
    # The token is not stored (only its hash, which is not shown): the admin cannot hand one out.
    list_display = ["created_at", "incident", "user", "notification", "expires_at", "used_at"]
    exclude = ["key_hash"]
    list_select_related = ["incident", "user", "notification"]
    search_fields = ["incident__reference", "user__username"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False


@admin.register(ProviderReply)
class ProviderReplyAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "channel", "sender", "text", "notification", "outcome"]
    list_filter = ["channel"]
    list_select_related = ["notification"]
    search_fields = ["sender", "notification__incident__reference", "provider_id"]
    ordering = ["-received_at", "-id"]
    show_full_result_count = False
