"""Admin for the escalation policy (when, and who next) and the rows the engine writes.

The policy tables are configuration; deadlines, firings, status updates and regulatory obligations
are read-only, like the timeline. Every refusal is a field or formset error on the page.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.html import format_html

from incidents.admin import (
    ReadOnlyAdmin,
    _without_delete_selected,
    known_severity_level,
    not_negative,
    save_allowing_swaps,
)
from incidents.escalation.models import (
    Audience,
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    EscalationTrigger,
    RegimeStage,
    RegulatoryCategory,
    RegulatoryClassification,
    RegulatoryObligation,
    RegulatoryRegime,
    StatusUpdate,
)


class EscalationStepForm(forms.ModelForm):
    class Meta:
        model = EscalationStep
        fields = ["order", "delay", "target", "role"]

    def clean(self):
        cleaned = super().clean()
        not_negative(self, "delay")
        return cleaned


class EscalationStepFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # the rows' own errors come first; nothing is saved either way
        steps = [
            form
            for form in self.forms
            if form.cleaned_data and not (self.can_delete and self._should_delete_form(form))
        ]
        if not steps:
            raise ValidationError("An escalation chain needs at least one step.")


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    form = EscalationStepForm
    formset = EscalationStepFormSet
    fields = ["order", "delay", "target", "role"]
    ordering = ["order"]
    verbose_name_plural = (
        "steps (the first pages at once; the second when the response time runs out, plus its delay; "
        "each later one its delay after the previous)"
    )

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 1 if obj is None else 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("role")


class EscalationPolicyForm(forms.ModelForm):
    class Meta:
        model = EscalationPolicy
        fields = ["name", "is_default", "continue_with", "status_update_escalate_after"]

    def clean(self):
        cleaned = super().clean()
        not_negative(self, "status_update_escalate_after", positive=True)
        # New incidents freeze the default policy's chain: without one they would page nobody.
        switch = "use “Make the selected policy the default” on the policy list to switch"
        if cleaned.get("is_default"):
            other = EscalationPolicy.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
            if other is not None:
                self.add_error("is_default", f"“{other}” is the default policy; {switch}.")
        elif self.instance.pk and self.instance.is_default:  # still the saved value in clean()
            self.add_error("is_default", f"There must be a default policy; {switch}.")
        return cleaned


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    form = EscalationPolicyForm
    list_display = [
        "name",
        "is_default",
        "step_count",
        "continue_with",
        "status_update_escalate_after",
    ]
    list_filter = ["is_default"]
    list_select_related = ["continue_with"]
    search_fields = ["name"]
    ordering = ["-is_default", "name"]
    inlines = [EscalationStepInline]
    actions = ["make_default"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_step_count=Count("steps"))

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_default:
            return False  # new incidents would open with no escalation chain
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))

    @admin.action(description="Make the selected policy the default", permissions=["change"])
    def make_default(self, request, queryset) -> None:
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Select exactly one policy.", messages.ERROR)
            return
        with transaction.atomic():
            # Unset first: the partial unique index allows one default at a time.
            EscalationPolicy.objects.filter(is_default=True).exclude(pk=chosen[0].pk).update(is_default=False)
            EscalationPolicy.objects.filter(pk=chosen[0].pk).update(is_default=True)
        self.message_user(
            request,
            f"“{chosen[0]}” is now the default; incidents opened from now on use it.",
            messages.SUCCESS,
        )

    def save_formset(self, request, form, formset, change: bool) -> None:
        save_allowing_swaps(formset)

    @admin.display(description="steps", ordering="_step_count")
    def step_count(self, obj: EscalationPolicy) -> int:
        return obj._step_count


class EscalationTriggerForm(forms.ModelForm):
    class Meta:
        model = EscalationTrigger
        fields = [
            "key",
            "name",
            "role",
            "condition",
            "severity_level",
            "open_for",
            "amount_usd",
            "active",
        ]

    def clean(self):
        cleaned = super().clean()
        not_negative(self, "open_for", positive=True)
        known_severity_level(self, "severity_level")
        return cleaned


@admin.register(EscalationTrigger)
class EscalationTriggerAdmin(admin.ModelAdmin):
    form = EscalationTriggerForm
    list_display = [
        "name",
        "key",
        "role",
        "condition",
        "severity_level",
        "open_for",
        "amount_usd",
        "active",
    ]
    list_editable = ["active"]
    list_filter = ["condition", "role", "active"]
    list_select_related = ["role"]
    search_fields = ["key", "name", "role__name"]
    ordering = ["key"]

    def get_prepopulated_fields(self, request, obj=None):
        return {"key": ["name"]} if obj is None else {}

    def get_readonly_fields(self, request, obj=None):
        # Deadlines of open incidents name their trigger by key ("role:<key>").
        return ["key"] if obj is not None else []


class RegulatoryCategoryForm(forms.ModelForm):
    class Meta:
        model = RegulatoryCategory
        fields = ["key", "name", "window", "immediate_grace", "reminder_before", "is_compliance"]

    def clean(self):
        cleaned = super().clean()
        not_negative(self, "immediate_grace", positive=True)
        not_negative(self, "reminder_before")
        return cleaned


@admin.register(RegulatoryCategory)
class RegulatoryCategoryAdmin(admin.ModelAdmin):
    form = RegulatoryCategoryForm
    list_display = [
        "name",
        "key",
        "window",
        "immediate_grace",
        "reminder_before",
        "is_compliance",
        "raised_automatically",
    ]
    list_filter = ["window", "is_compliance", "raised_automatically"]
    search_fields = ["key", "name"]
    ordering = ["window", "name"]

    def get_prepopulated_fields(self, request, obj=None):
        return {"key": ["name"]} if obj is None else {}

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["raised_automatically"]
        # The escalation engine raises these by key (outage over 4 h, resolved security incident).
        return ["key", "raised_automatically"] if obj.raised_automatically else ["raised_automatically"]

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.raised_automatically:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


class DeadlineStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending"),
            ("overdue", "Pending and overdue"),
            ("fired", "Fired"),
            ("cancelled", "Cancelled"),
        ]

    def queryset(self, request, queryset):
        pending = Q(fired_at__isnull=True, cancelled_at__isnull=True)
        if self.value() == "pending":
            return queryset.filter(pending)
        if self.value() == "overdue":
            return queryset.filter(pending, due_at__lte=timezone.now())  # overdue from the due moment on
        if self.value() == "fired":
            return queryset.filter(fired_at__isnull=False)
        if self.value() == "cancelled":
            return queryset.filter(cancelled_at__isnull=False)
        return queryset


@admin.register(Deadline)
class DeadlineAdmin(ReadOnlyAdmin):
    list_display = [
        "due_at",
        "incident",
        "kind",
        "rule",
        "step",
        "fired_at",
        "cancelled_at",
        "cancel_reason",
    ]
    list_filter = [DeadlineStateFilter, "kind", "incident__is_drill"]
    list_select_related = ["incident"]
    search_fields = ["incident__reference", "rule"]
    date_hierarchy = "due_at"
    ordering = ["-due_at", "-id"]
    show_full_result_count = False


class RuleKindFilter(admin.SimpleListFilter):
    """Rules are strings ("ack", "role:cto-sev1", "status:3", "regulatory:12", "outage_4h")."""

    title = "kind"
    parameter_name = "kind"
    prefixes = {
        "ack": ("Acknowledge chain", Q(rule="ack")),
        "role": ("Role escalation", Q(rule__startswith="role:")),
        "status": ("Status update", Q(rule__startswith="status:")),
        "regulatory": ("Regulatory", Q(rule__startswith="regulatory:")),
        "outage": ("Outage", Q(rule__startswith="outage")),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.prefixes.items()]

    def queryset(self, request, queryset):
        entry = self.prefixes.get(self.value() or "")
        return queryset.filter(entry[1]) if entry else queryset


@admin.register(EscalationEvent)
class EscalationEventAdmin(ReadOnlyAdmin):
    list_display = [
        "fired_at",
        "incident",
        "rule",
        "step",
        "target_label",
        "target_user",
        "summary",
    ]
    list_filter = [RuleKindFilter, ("target_user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["incident", "target_user"]
    search_fields = ["incident__reference", "rule", "summary", "target_label"]
    date_hierarchy = "fired_at"
    ordering = ["-fired_at", "-id"]
    show_full_result_count = False


@admin.register(StatusUpdate)
class StatusUpdateAdmin(ReadOnlyAdmin):
    list_display = [
        "posted_at",
        "incident",
        "sequence",
        "subject",
        "status",
        "severity_level",
        "is_public",
        "posted_by",
    ]
    list_filter = ["status", "severity_level", "is_public"]
    list_select_related = ["incident", "posted_by"]
    search_fields = ["incident__reference", "subject", "details"]
    date_hierarchy = "posted_at"
    ordering = ["-posted_at", "-id"]
    show_full_result_count = False


class ObligationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending"),
            ("overdue", "Pending and overdue"),
            ("submitted", "Submitted, not signed off"),
            ("signed_off", "Signed off"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "pending":
            return queryset.filter(submitted_at__isnull=True)
        if value == "overdue":
            return queryset.filter(submitted_at__isnull=True, due_at__lte=timezone.now())
        if value == "submitted":
            return queryset.filter(submitted_at__isnull=False, signed_off_at__isnull=True)
        if value == "signed_off":
            return queryset.filter(signed_off_at__isnull=False)
        return queryset


@admin.register(RegulatoryObligation)
class RegulatoryObligationAdmin(ReadOnlyAdmin):
    list_display = [
        "due_at",
        "incident",
        "label",
        "status_display",
        "submitted_at",
        "signed_off_at",
    ]
    list_filter = [ObligationStatusFilter, "regime", "category"]
    list_select_related = ["incident", "category", "regime", "stage"]
    search_fields = ["incident__reference", "submission_reference", "category__name"]
    date_hierarchy = "due_at"
    ordering = ["-due_at", "-id"]
    fields = [
        "incident",
        "regime",
        "stage",
        "category",
        "classification",
        "status_display",
        "raised_at",
        "raised_by",
        "clock_started_at",
        "due_at",
        "drafted_at",
        "drafted_by",
        "content",
        "submitted_at",
        "submitted_by",
        "submission_reference",
        "evidence_name",
        "signed_off_at",
        "signed_off_by",
    ]
    readonly_fields = fields

    @admin.display(description="status")
    def status_display(self, obj: RegulatoryObligation) -> str:
        return obj.status

    @admin.display(description="submission evidence")
    def evidence_name(self, obj: RegulatoryObligation) -> str:
        # The name only: media files are not served directly, and a link here would 404 or leak.
        if not obj.submission_evidence:
            return "—"
        return format_html("<code>{}</code>", obj.submission_evidence.name.rsplit("/", 1)[-1])


class RegimeStageForm(forms.ModelForm):
    class Meta:
        model = RegimeStage
        fields = [
            "order",
            "key",
            "name",
            "anchor",
            "within",
            "within_working_days",
            "within_months",
            "no_later_than_after_awareness",
            "reminder_before",
            "requires_sign_off",
            "citation",
        ]

    def clean(self):
        cleaned = super().clean()
        not_negative(self, "within", positive=True)
        not_negative(self, "no_later_than_after_awareness", positive=True)
        not_negative(self, "reminder_before")
        return cleaned


class RegimeStageInline(admin.TabularInline):
    model = RegimeStage
    form = RegimeStageForm
    extra = 0
    can_delete = False  # obligations keep their stage (PROTECT); a stage is changed, not removed


@admin.register(RegulatoryRegime)
class RegulatoryRegimeAdmin(admin.ModelAdmin):
    """Regimes are data: stages, clocks, anchors, the working-day rule and the texts they cite."""

    list_display = ["name", "key", "effective_from", "is_default", "active", "moves_off_non_working_days"]
    search_fields = ["key", "name"]
    inlines = [RegimeStageInline]

    def get_readonly_fields(self, request, obj=None):
        # The default regime stands for the procedures' categories, which the engine finds by it.
        return ["key", "is_default"] if obj is not None else ["is_default"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # obligations point at regimes; retire one by unticking "active"

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


@admin.register(RegulatoryClassification)
class RegulatoryClassificationAdmin(ReadOnlyAdmin):
    list_display = ["classified_at", "incident", "regime", "reportable", "classified_by"]
    list_filter = ["regime", "reportable"]
    list_select_related = ["incident", "regime", "classified_by"]
    search_fields = ["incident__reference"]
    fields = [
        "incident",
        "regime",
        "reportable",
        "criteria_met",
        "rationale",
        "aware_at",
        "classified_at",
        "classified_by",
    ]
    readonly_fields = fields


@admin.register(Audience)
class AudienceAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "order", "include_commander", "suggest_public"]
    filter_horizontal = ["distribution_lists"]
    ordering = ["order", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["key"] if obj is not None else []
