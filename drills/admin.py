"""Drills and training in the admin.

The seeded tables (drill kinds and their target times, certification kinds, the training policy)
are edited here; certification kinds beyond the seed's two are added here. The records the
portal's services write (drills, certifications, mentored responses, overrides, acknowledgements,
reminders) are read-only: they are made on the portal's pages, where the rules are checked.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from incidents.oncall import admin as oncall_admin
from incidents.oncall.models import OnCallOverride, OnCallRotation

from .models import (
    CalendarFeedToken,
    Certification,
    CertificationKind,
    Drill,
    DrillFinding,
    DrillKind,
    DrillKindTarget,
    DrillParticipant,
    DrillStopAttempt,
    DrillTarget,
    MentoredResponse,
    ProcedureAcknowledgement,
    ProcedureDocument,
    ReadinessOverride,
    Reminder,
    TrainingPolicy,
    TrainingProfile,
)
from .roster_gate import ReadinessGateAdminMixin, ReadinessGateInlineMixin


class ReadOnlyAdmin(admin.ModelAdmin):
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


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# -- editable policy tables -------------------------------------------------------------------


class DrillKindTargetForm(forms.ModelForm):
    class Meta:
        model = DrillKindTarget
        fields = ["order", "name", "target", "measure"]

    def clean_target(self):
        value = self.cleaned_data["target"]
        if value is not None and value.total_seconds() <= 0:
            raise forms.ValidationError("A target time must be longer than zero.")
        return value


class DrillKindTargetInline(admin.TabularInline):
    model = DrillKindTarget
    form = DrillKindTargetForm
    extra = 0
    ordering = ["order", "id"]
    verbose_name_plural = "target times (copied to each drill when it is scheduled; edit a drill's own there)"


class DrillKindForm(forms.ModelForm):
    class Meta:
        model = DrillKind
        fields = [
            "key",
            "name",
            "cadence",
            "description",
            "default_scenario",
            "default_objectives",
            "default_duration",
            "opens_incident",
            "incident_severity",
            "incident_category",
            "incident_systems",
            "measures_emergency_stop",
            "order",
            "active",
        ]
        widgets = {"incident_systems": forms.CheckboxSelectMultiple}

    def clean_default_duration(self):
        value = self.cleaned_data["default_duration"]
        if value is not None and not 300 <= value.total_seconds() <= 3 * 86400:
            raise forms.ValidationError("Between 5 minutes and 3 days.")
        return value


@admin.register(DrillKind)
class DrillKindAdmin(admin.ModelAdmin):
    form = DrillKindForm
    list_display = ["name", "cadence", "default_duration", "opens_incident", "measures_emergency_stop", "active"]
    list_filter = ["cadence", "active"]
    search_fields = ["name", "key", "description"]
    ordering = ["cadence", "order"]
    inlines = [DrillKindTargetInline]

    def get_readonly_fields(self, request, obj=None):
        return ["key"] if obj is not None else []


class CertificationKindForm(forms.ModelForm):
    class Meta:
        model = CertificationKind
        fields = ["key", "name", "description", "validity_months", "required_for", "active", "order"]
        widgets = {"required_for": forms.CheckboxSelectMultiple}


@admin.register(CertificationKind)
class CertificationKindAdmin(admin.ModelAdmin):
    form = CertificationKindForm
    list_display = ["name", "validity_months", "roles", "active"]
    list_filter = ["active"]
    search_fields = ["name", "key"]
    ordering = ["order", "name"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("required_for")

    def get_prepopulated_fields(self, request, obj=None):
        return {"key": ["name"]} if obj is None else {}

    def get_readonly_fields(self, request, obj=None):
        return ["key"] if obj is not None else []

    @admin.display(description="required for")
    def roles(self, obj: CertificationKind) -> str:
        return ", ".join(g.name for g in obj.required_for.all()) or "—"


@admin.register(TrainingPolicy)
class TrainingPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "mentored_responses_required",
        "expiring_within_days",
        "certification_reminder_days",
        "drill_reminder_hours",
    ]

    def has_add_permission(self, request) -> bool:
        return not TrainingPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingProfile)
class TrainingProfileAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "joined_team_on",
        "mentored_responses_required",
        "mentoring_waived_at",
        "mentoring_waived_by",
    ]
    list_select_related = ["user", "mentoring_waived_by"]
    search_fields = ["user__username", "user__first_name", "user__last_name"]
    fields = [
        "user",
        "joined_team_on",
        "mentored_responses_required",
        "mentoring_waived_at",
        "mentoring_waived_by",
        "mentoring_waiver_reason",
    ]
    readonly_fields = ["user", "mentoring_waived_at", "mentoring_waived_by", "mentoring_waiver_reason"]

    def has_add_permission(self, request) -> bool:
        return False  # made by the portal (a waiver, a profile change)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# -- records the portal writes: read-only -----------------------------------------------------


class ParticipantInline(ReadOnlyInline):
    model = DrillParticipant
    fields = ["user", "role", "attended", "attended_role"]
    readonly_fields = fields


class TargetInline(ReadOnlyInline):
    model = DrillTarget
    fields = ["name", "target", "measure", "actual"]
    readonly_fields = fields


class FindingInline(ReadOnlyInline):
    model = DrillFinding
    fields = ["title", "action_item", "created_by", "created_at"]
    readonly_fields = fields


class StopAttemptInline(ReadOnlyInline):
    model = DrillStopAttempt
    fields = ["requested_at", "completed_at", "outcome", "requested_by", "detail"]
    readonly_fields = fields


@admin.register(Drill)
class DrillAdmin(ReadOnlyAdmin):
    list_display = ["reference", "title", "kind", "scheduled_start", "state", "facilitator", "incident", "time_to_stop"]
    list_filter = ["state", "kind__cadence", "kind"]
    list_select_related = ["kind", "facilitator", "incident"]
    search_fields = ["title", "scenario", "facilitator__username", "incident__reference"]
    date_hierarchy = "scheduled_start"
    ordering = ["-scheduled_start"]
    inlines = [ParticipantInline, TargetInline, FindingInline, StopAttemptInline]
    fields = [
        "kind",
        "title",
        "scenario",
        "objectives",
        "scheduled_start",
        "duration",
        "facilitator",
        "state",
        "started_at",
        "started_by",
        "incident",
        "completed_at",
        "completed_by",
        "result",
        "outcome_summary",
        "went_well",
        "could_improve",
        "cancelled_at",
        "cancelled_by",
        "cancel_reason",
        "emergency_stop_verified_at",
        "time_to_stop",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields

    def view_on_site(self, obj: Drill) -> str:
        return reverse("drills:detail", args=[obj.pk])


@admin.register(Certification)
class CertificationAdmin(ReadOnlyAdmin):
    list_display = ["person", "kind", "issued_on", "expires_on", "issued_by", "evidence_name", "recorded_at"]
    list_filter = ["kind", "expires_on"]
    list_select_related = ["person", "kind", "issued_by"]
    search_fields = ["person__username", "person__first_name", "person__last_name", "evidence_note"]
    date_hierarchy = "issued_on"
    ordering = ["-issued_on"]
    fields = [
        "person",
        "kind",
        "issued_on",
        "expires_on",
        "issued_by",
        "evidence_name",
        "evidence_note",
        "recorded_by",
        "recorded_at",
    ]
    readonly_fields = fields

    @admin.display(description="evidence")
    def evidence_name(self, obj: Certification) -> str:
        if not obj.evidence:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("drills:certification_evidence", args=[obj.pk]),
            obj.evidence.name.rsplit("/", 1)[-1],
        )


@admin.register(MentoredResponse)
class MentoredResponseAdmin(ReadOnlyAdmin):
    list_display = ["mentee", "mentor", "incident", "drill", "occurred_at", "source"]
    list_filter = ["source"]
    list_select_related = ["mentee", "mentor", "incident", "drill"]
    search_fields = ["mentee__username", "mentor__username", "incident__reference"]
    ordering = ["-occurred_at"]


@admin.register(ReadinessOverride)
class ReadinessOverrideAdmin(ReadOnlyAdmin):
    list_display = ["person", "duty", "incident", "valid_from", "valid_until", "granted_by", "granted_at", "context"]
    list_filter = ["duty"]
    list_select_related = ["person", "incident", "granted_by"]
    search_fields = ["person__username", "justification", "context"]
    ordering = ["-granted_at"]


class AcknowledgementInline(ReadOnlyInline):
    model = ProcedureAcknowledgement
    fields = ["person", "acknowledged_at"]
    readonly_fields = fields


@admin.register(ProcedureDocument)
class ProcedureDocumentAdmin(ReadOnlyAdmin):
    list_display = ["version", "title", "published_at", "published_by", "created_at"]
    ordering = ["-version"]
    fields = [
        "version",
        "title",
        "summary_of_changes",
        "published_at",
        "published_by",
        "created_by",
        "created_at",
        "body",
    ]
    readonly_fields = fields
    inlines = [AcknowledgementInline]

    def view_on_site(self, obj: ProcedureDocument) -> str:
        return reverse("drills:procedure", args=[obj.version])


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdmin):
    list_display = [
        "due_at",
        "kind",
        "recipient",
        "drill",
        "certification",
        "sent_at",
        "cancelled_at",
        "channels",
        "last_error",
    ]
    list_filter = ["kind"]
    list_select_related = ["recipient", "drill", "certification__kind", "certification__person"]
    ordering = ["-due_at"]
    show_full_result_count = False


@admin.register(CalendarFeedToken)
class CalendarFeedTokenAdmin(ReadOnlyAdmin):
    """Whose calendar feeds exist, by the secret's first characters (only its hash is stored).

    A feed token is made on the person's own training page, where its URL is shown once; here
    an admin can only delete one, which stops a leaked feed.
    """

    list_display = ["user", "token_prefix", "created_at"]
    fields = ["user", "token_prefix", "created_at"]
    readonly_fields = fields
    list_select_related = ["user"]
    search_fields = ["user__username", "prefix"]

    @admin.display(description="token starts with")
    def token_prefix(self, obj: CalendarFeedToken) -> str:
        return f"{obj.prefix}…"

    def has_delete_permission(self, request, obj=None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def get_actions(self, request):
        return admin.ModelAdmin.get_actions(self, request)


# -- the readiness gate on the on-call roster's admin -------------------------------------------
# The roster's admins (incidents.oncall) know nothing of certifications: the gate is mixed in here
# and the gated admins take their place.


class GatedRotationMemberInline(ReadinessGateInlineMixin, oncall_admin.RotationMemberInline):
    pass


class GatedOnCallOverrideInline(ReadinessGateInlineMixin, oncall_admin.OnCallOverrideInline):
    pass


class GatedOnCallRotationAdmin(oncall_admin.OnCallRotationAdmin):
    inlines = [GatedRotationMemberInline, GatedOnCallOverrideInline]


class GatedOnCallOverrideAdmin(ReadinessGateAdminMixin, oncall_admin.OnCallOverrideAdmin):
    pass


for _model, _gated in ((OnCallRotation, GatedOnCallRotationAdmin), (OnCallOverride, GatedOnCallOverrideAdmin)):
    admin.site.unregister(_model)
    admin.site.register(_model, _gated)
