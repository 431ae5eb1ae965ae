"""Components are configured in the admin; published incidents, updates, maintenance and
subscribers are read-only here (they are written through the status pages' services)."""

from django.contrib import admin

from incidents.status import cache
from incidents.status.models import Maintenance, PublicIncident, StatusComponent, Subscriber


@admin.register(StatusComponent)
class StatusComponentAdmin(admin.ModelAdmin):
    list_display = ["system", "public_name", "group", "position", "visible", "manual_state"]
    list_editable = ["public_name", "group", "position", "visible", "manual_state"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        cache.invalidate_on_commit()


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PublicIncident)
class PublicIncidentAdmin(ReadOnly):
    list_display = ["title", "status", "impact", "published_at", "resolved_at"]


@admin.register(Maintenance)
class MaintenanceAdmin(ReadOnly):
    list_display = ["title", "state", "starts_at", "ends_at"]


@admin.register(Subscriber)
class SubscriberAdmin(ReadOnly):
    list_display = ["kind", "email", "url", "created_at", "confirmed_at", "unsubscribed_at"]
    exclude = ["secret"]
