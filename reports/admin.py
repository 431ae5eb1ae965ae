"""Post-incident reviews, action items and the report policy in the admin.

Writes go through services (DESIGN.md, Conventions). The review workflow (submit, request changes
with comments, approve and freeze) lives on the report page, where each step takes the input it
needs; here reviews and action items are listed, filtered and shown read-only, with links to the
report and to the frozen PDF, and refuse every write, bare FSM transitions included. The reminder
timings (ReportPolicy) are editable data.
"""

from __future__ import annotations

from django import http
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_fsm.admin import FSMAdminMixin

from incidents.admin import IncidentAdmin, ReadOnlyInline

from .models import ActionItem, PostIncidentReview, ReportPolicy


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
        "primary_cause",
        "contributing_factors",
        "resolution_actions",
        "verification_steps",
        "went_well",
        "could_improve",
        "prevention_immediate",
        "prevention_long_term",
        "monitoring_improvements",
        "reviewer_comments",
        "submitted_at",
        "submitted_by",
        "changes_requested_at",
        "changes_requested_by",
        "approved_at",
        "approved_by",
        "content_sha256",
        "pdf_sha256",
        "pdf_rendered_at",
        "report_links",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="report")
    def report_links(self, obj: PostIncidentReview) -> str:
        report = reverse("reports:report", args=[obj.incident.reference])
        if obj.pdf_sha256:
            pdf = reverse("reports:review_pdf", args=[obj.incident.reference, obj.revision])
            return format_html('<a href="{}">Report page</a> · <a href="{}">approved PDF</a>', report, pdf)
        return format_html('<a href="{}">Report page</a>', report)

    def is_fsm_transition_visible(self, transition) -> bool:
        return False  # the workflow needs comments and freezes the report: see the report page

    def _apply_fsm_transition(self, *, obj, transition_name, request, kwargs=None) -> bool:
        # A hand-made POST must not run the bare transition and save() either.
        self.message_user(request, "Reviews move on the incident's report page.", messages.ERROR)
        return False

    def fsm_transition_view(self, request, object_id, transition_name, **kwargs):
        raise http.Http404("Reviews move on the incident's report page.")


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
        "updated_at",
        "completed_at",
    ]
    readonly_fields = fields


@admin.register(ReportPolicy)
class ReportPolicyAdmin(admin.ModelAdmin):
    """The one row of reminder timings (seeded by a migration); edited, never added or deleted."""

    list_display = [
        "__str__",
        "review_reminder_before",
        "review_escalate_after",
        "action_item_reminder_before",
        "action_item_escalate_after",
    ]

    def has_add_permission(self, request) -> bool:
        return not ReportPolicy.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# -- the incident's reviews and action items, on the incident's admin page ---------------------


class PostIncidentReviewInline(ReadOnlyInline):
    model = PostIncidentReview
    fields = ["revision", "state", "author", "submitted_at", "approved_at", "approved_by"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author", "approved_by")


class ActionItemInline(ReadOnlyInline):
    model = ActionItem
    fields = ["title", "kind", "state", "owner", "due_date", "completed_at"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")


IncidentAdmin.inlines = [*IncidentAdmin.inlines, PostIncidentReviewInline, ActionItemInline]
