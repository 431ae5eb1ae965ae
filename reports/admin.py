"""Post-incident reviews and action items in the admin: read-only until their services exist.

Writes go through services (DESIGN.md, Conventions); reports has none yet, so these admins list,
filter and show, and refuse every write, transitions included. When reports/services.py lands,
the transitions become buttons by routing _apply_fsm_transition through it, as IncidentAdmin does.
"""

from __future__ import annotations

from django import http
from django.contrib import admin, messages
from django.utils import timezone
from django_fsm.admin import FSMAdminMixin

from .models import ActionItem, PostIncidentReview


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(PostIncidentReview)
class PostIncidentReviewAdmin(ReadOnlyMixin, FSMAdminMixin, admin.ModelAdmin):
    fsm_fields = ["state"]

    list_display = [
        "incident",
        "revision",
        "state",
        "author",
        "submitted_at",
        "approved_at",
        "approved_by",
        "created_at",
    ]
    list_filter = ["state", "incident__severity"]
    list_select_related = ["incident", "author", "approved_by"]
    search_fields = ["incident__reference", "incident__title", "root_cause_analysis"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    fields = [
        "incident",
        "revision",
        "state",
        "author",
        "timeline_reconstruction",
        "root_cause_analysis",
        "response_effectiveness",
        "process_improvements",
        "prevention_measures",
        "reviewer_comments",
        "submitted_at",
        "approved_at",
        "approved_by",
        "created_at",
    ]
    readonly_fields = fields

    def is_fsm_transition_visible(self, transition) -> bool:
        return False  # no review service yet: a bare transition would skip the timeline

    def _apply_fsm_transition(self, *, obj, transition_name, request, kwargs=None) -> bool:
        # A hand-made POST must not run the bare transition and save() either.
        self.message_user(request, "Reviews cannot be moved from the admin yet.", messages.ERROR)
        return False

    def fsm_transition_view(self, request, object_id, transition_name, **kwargs):
        raise http.Http404("Reviews cannot be moved from the admin yet.")


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue"), ("no", "Not overdue")]

    def queryset(self, request, queryset):
        open_overdue = {
            "state__in": [ActionItem.State.OPEN, ActionItem.State.IN_PROGRESS],
            "due_date__lt": timezone.localdate(),
        }
        if self.value() == "yes":
            return queryset.filter(**open_overdue)
        if self.value() == "no":
            return queryset.exclude(**open_overdue)
        return queryset


@admin.register(ActionItem)
class ActionItemAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["title", "incident", "kind", "state", "owner", "due_date", "completed_at"]
    list_filter = [
        "state",
        "kind",
        OverdueFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
        "due_date",
    ]
    list_select_related = ["incident", "owner"]
    search_fields = ["title", "description", "incident__reference", "incident__title"]
    date_hierarchy = "due_date"
    ordering = ["due_date", "id"]
    fields = [
        "title",
        "incident",
        "kind",
        "state",
        "owner",
        "due_date",
        "description",
        "closing_note",
        "created_by",
        "created_at",
        "completed_at",
    ]
    readonly_fields = fields
