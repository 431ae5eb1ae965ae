"""Admin for the roster (who is paged) and the escalation policy (when, and who next).

The roster and policy tables are configuration that the incident manager maintains here; the
rows the escalation engine writes (deadlines, firings, notifications and their attempt log,
status updates, regulatory obligations, worker heartbeats) are read-only, like the timeline.
Every refusal is a field or formset error on the page: nothing half-saved, no 500.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

# Readiness gate (drills issue #6): on-call assignments are checked against certifications and
# mentoring; a manager may override with a justification, which is recorded.
from drills.roster_gate import ReadinessGateAdminMixin, ReadinessGateInlineMixin
from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    EscalationTrigger,
    RegulatoryCategory,
    RegulatoryObligation,
    StatusUpdate,
)
from incidents.models import BusinessHoliday, SeverityLevel
from incidents.monitoring.models import WorkerHeartbeat
from incidents.notifications.models import (
    DistributionList,
    Notification,
    NotificationAttempt,
    WebhookEndpoint,
)
from incidents.oncall.models import (
    OnCallOverride,
    OnCallRotation,
    Person,
    RoleContact,
    RotationMember,
)

from .admin import ReadOnlyAdmin, ReadOnlyInline, _without_delete_selected

# -- shared form checks ----------------------------------------------------------------------


def _active_users():
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .order_by("first_name", "last_name", "username")
    )


class _UserChoiceMixin:
    """Only active people, by name: a disabled account must not be put on call."""

    user_fields: tuple[str, ...] = ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.user_fields:
            kwargs["queryset"] = _active_users()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _not_negative(form: forms.ModelForm, *names: str, positive: bool = False) -> None:
    """DurationField accepts "-1 day"; a negative delay would fire a step before its cause."""
    for name in names:
        value = form.cleaned_data.get(name)
        if value is None:
            continue
        if value < timedelta(0) or (positive and value == timedelta(0)):
            form.add_error(name, "Must be longer than zero." if positive else "Cannot be negative.")


def _known_severity_level(form: forms.ModelForm, name: str) -> None:
    level = form.cleaned_data.get(name)
    if level is None:
        return
    levels = sorted(SeverityLevel.objects.values_list("level", flat=True))
    if levels and level not in levels:
        form.add_error(name, f"Use a severity level that exists ({', '.join(map(str, levels))}).")


def _save_allowing_swaps(formset) -> None:
    """Save an inline whose rows carry unique values (a step's order, a member's position/user).

    The constraints are checked row by row, so swapping two rows' values in one save would fail
    on the first UPDATE. The formset has already checked that the final set is unique; so the
    changed and deleted rows are removed first and the changed ones re-inserted with their ids.
    Nothing references these rows, and the admin's change view runs in one transaction.
    """
    instances = formset.save(commit=False)
    changed = [obj for obj, _ in formset.changed_objects]
    stale = [obj.pk for obj in [*changed, *formset.deleted_objects]]
    if stale:
        formset.model._default_manager.filter(pk__in=stale).delete()
    for obj in instances:
        obj.save(force_insert=obj in changed)
    formset.save_m2m()


# -- people and roles ------------------------------------------------------------------------


@admin.register(Person)
class PersonAdmin(_UserChoiceMixin, admin.ModelAdmin):
    user_fields = ("user",)
    list_display = ["name", "username", "email", "phone", "sms_number", "timezone"]
    list_filter = ["timezone"]
    list_select_related = ["user"]
    search_fields = [
        "user__username",
        "user__first_name",
        "user__last_name",
        "user__email",
        "phone",
        "sms_number",
    ]
    ordering = ["user__first_name", "user__last_name", "user__username"]
    fields = ["user", "phone", "sms_number", "timezone"]

    @admin.display(description="name", ordering="user__first_name")
    def name(self, obj: Person) -> str:
        return str(obj)

    @admin.display(description="username", ordering="user__username")
    def username(self, obj: Person) -> str:
        return obj.user.get_username()

    @admin.display(description="email", ordering="user__email")
    def email(self, obj: Person) -> str:
        return obj.user.email or "—"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "timezone" in form.base_fields:
            form.base_fields[
                "timezone"
            ].help_text = "IANA name, e.g. Europe/London or America/New_York."
        return form


def _phone(user) -> str:
    person = getattr(user, "person", None) if user is not None else None
    return (person.phone if person else "") or "—"


@admin.register(RoleContact)
class RoleContactAdmin(_UserChoiceMixin, admin.ModelAdmin):
    user_fields = ("primary", "deputy")
    list_display = ["role", "primary", "primary_phone", "deputy", "deputy_phone"]
    list_select_related = ["role", "primary__person", "deputy__person"]
    search_fields = ["role__name", "primary__username", "primary__last_name", "deputy__username"]
    ordering = ["role__name"]

    @admin.display(description="primary's phone")
    def primary_phone(self, obj: RoleContact) -> str:
        return _phone(obj.primary)

    @admin.display(description="deputy's phone")
    def deputy_phone(self, obj: RoleContact) -> str:
        return _phone(obj.deputy)


# -- rotations and overrides -----------------------------------------------------------------


class RotationMemberInline(ReadinessGateInlineMixin, _UserChoiceMixin, admin.TabularInline):
    model = RotationMember
    user_fields = ("user",)
    fields = ["position", "user"]
    ordering = ["position"]
    extra = 1
    verbose_name_plural = "members (in rotation order: position 0 takes the first shift)"


class OnCallOverrideInline(ReadinessGateInlineMixin, _UserChoiceMixin, admin.TabularInline):
    model = OnCallOverride
    user_fields = ("user",)
    fields = ["user", "starts_at", "ends_at", "reason", "created_by"]
    readonly_fields = ["created_by"]
    extra = 0
    verbose_name_plural = "overrides: holiday covers and swaps (current and upcoming; past ones under On-call overrides)"

    def get_queryset(self, request):
        # Past covers pile up; they stay visible on the overrides' own list.
        return (
            super()
            .get_queryset(request)
            .filter(ends_at__gt=timezone.now())
            .select_related("user", "created_by")
        )


class OnCallRotationForm(forms.ModelForm):
    class Meta:
        model = OnCallRotation
        fields = ["name", "role", "shift", "handover_time", "timezone", "starts_on", "active"]
        help_texts = {"timezone": "IANA name of the hand-over's time zone, e.g. Europe/London."}


@admin.register(OnCallRotation)
class OnCallRotationAdmin(admin.ModelAdmin):
    form = OnCallRotationForm
    list_display = [
        "name",
        "role",
        "shift",
        "handover_time",
        "timezone",
        "starts_on",
        "member_names",
        "active",
    ]
    list_filter = ["active", "shift", "role"]
    list_select_related = ["role"]
    search_fields = ["name", "role__name"]
    ordering = ["name"]
    inlines = [RotationMemberInline, OnCallOverrideInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("members__user")

    @admin.display(description="members")
    def member_names(self, obj: OnCallRotation) -> str:
        names = [m.user.get_full_name() or m.user.get_username() for m in obj.members.all()]
        return ", ".join(names) or "—"

    def view_on_site(self, obj: OnCallRotation) -> str:
        return reverse("incidents:roster")

    def save_formset(self, request, form, formset, change: bool) -> None:
        if formset.model is RotationMember:
            _save_allowing_swaps(formset)
            return
        if formset.model is OnCallOverride:
            for inline_form in formset.forms:
                if inline_form.instance.pk is None and inline_form.has_changed():
                    inline_form.instance.created_by = request.user
        super().save_formset(request, form, formset, change)


class OverrideTimeFilter(admin.SimpleListFilter):
    title = "when"
    parameter_name = "when"

    def lookups(self, request, model_admin):
        return [("now", "In effect now"), ("upcoming", "Upcoming"), ("past", "Past")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "now":
            return queryset.filter(starts_at__lte=now, ends_at__gt=now)
        if self.value() == "upcoming":
            return queryset.filter(starts_at__gt=now)
        if self.value() == "past":
            return queryset.filter(ends_at__lte=now)
        return queryset


@admin.register(OnCallOverride)
class OnCallOverrideAdmin(ReadinessGateAdminMixin, _UserChoiceMixin, admin.ModelAdmin):
    user_fields = ("user",)
    list_display = ["rotation", "user", "starts_at", "ends_at", "reason", "created_by"]
    list_filter = [OverrideTimeFilter, "rotation"]
    list_select_related = ["rotation", "user", "created_by"]
    search_fields = [
        "rotation__name",
        "user__username",
        "user__first_name",
        "user__last_name",
        "reason",
    ]
    date_hierarchy = "starts_at"
    ordering = ["-starts_at"]
    fields = ["rotation", "user", "starts_at", "ends_at", "reason", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj: OnCallOverride, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(BusinessHoliday)
class BusinessHolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "name"]
    search_fields = ["name"]
    date_hierarchy = "date"
    ordering = ["-date"]


# -- escalation policy -----------------------------------------------------------------------


class EscalationStepForm(forms.ModelForm):
    class Meta:
        model = EscalationStep
        fields = ["order", "delay", "target", "role"]

    def clean(self):
        cleaned = super().clean()
        _not_negative(self, "delay")
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
        # Two steps with one order: super().clean() already refused them (the unique constraint).


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
        _not_negative(self, "status_update_escalate_after", positive=True)
        # New incidents freeze the default policy's chain: without one they would page nobody.
        switch = "use “Make the selected policy the default” on the policy list to switch"
        if cleaned.get("is_default"):
            other = (
                EscalationPolicy.objects.filter(is_default=True)
                .exclude(pk=self.instance.pk)
                .first()
            )
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
            EscalationPolicy.objects.filter(is_default=True).exclude(pk=chosen[0].pk).update(
                is_default=False
            )
            EscalationPolicy.objects.filter(pk=chosen[0].pk).update(is_default=True)
        self.message_user(
            request,
            f"“{chosen[0]}” is now the default; incidents opened from now on use it.",
            messages.SUCCESS,
        )

    def save_formset(self, request, form, formset, change: bool) -> None:
        _save_allowing_swaps(formset)

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
        _not_negative(self, "open_for", positive=True)
        _known_severity_level(self, "severity_level")
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
        _not_negative(self, "immediate_grace", positive=True)
        _not_negative(self, "reminder_before")
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
        return (
            ["key", "raised_automatically"]
            if obj.raised_automatically
            else ["raised_automatically"]
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.raised_automatically:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


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
        _known_severity_level(self, "max_severity_level")
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
        _known_severity_level(self, "max_severity_level")
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


# -- rows the escalation engine writes: read-only ---------------------------------------------


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
            return queryset.filter(pending, due_at__lt=timezone.now())
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
        return obj.notification.incident.reference


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
            return queryset.filter(submitted_at__isnull=True, due_at__lt=timezone.now())
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
        "category",
        "status_display",
        "submitted_at",
        "signed_off_at",
    ]
    list_filter = [ObligationStatusFilter, "category"]
    list_select_related = ["incident", "category"]
    search_fields = ["incident__reference", "submission_reference", "category__name"]
    date_hierarchy = "due_at"
    ordering = ["-due_at", "-id"]
    fields = [
        "incident",
        "category",
        "status_display",
        "raised_at",
        "raised_by",
        "due_at",
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
