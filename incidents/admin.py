"""The managers' admin.

Incidents change only through incidents.services, so the admin behaves like the web pages: the
FSM buttons, the change form and the add form all call a service that writes the timeline. The
history (timeline, evidence) is read-only here as everywhere else; the policy tables are the
seeded defaults that managers tune.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms, http
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html
from django_fsm.admin import FSMAdminMixin

from . import services
from .models import (
    OPEN_STATES,
    TRANSITION_NAMES,
    BusinessHoliday,
    ChecklistTemplate,
    ChecklistTemplateItem,
    EvidenceAttachment,
    Incident,
    IncidentChecklistItem,
    IncidentDaySequence,
    IncidentRole,
    IncidentRoleAssignment,
    PhaseTarget,
    RecoveryPointObjective,
    SeverityLevel,
    State,
    System,
    TimelineEntry,
    format_duration,
)
from .services.roles import role_holder_problem


def _without_delete_selected(actions: dict) -> dict:
    actions.pop("delete_selected", None)
    return actions


def _duration(value) -> str:
    return format_duration(value) if value is not None else "—"


class ReadOnlyInline(admin.TabularInline):
    """An inline that only lists: rows come from services, never from this form."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable and searchable; no add, change or delete (append-only or service-owned rows)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


# -- incident -------------------------------------------------------------------------------


class CancelForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Why this is a false alarm. It is recorded on the timeline.",
    )


class IncidentAdminForm(forms.ModelForm):
    # The state the user saw when the page loaded: a transition button pressed on a stale
    # page is refused instead of acting on a state the user never saw.
    loaded_state = forms.CharField(widget=forms.HiddenInput, required=False)
    user: Any = None  # set per request by IncidentAdmin.get_form

    class Meta:
        model = Incident
        # The admin narrows this per page (add or change) through its fieldsets.
        fields = [
            *services.EDITABLE_FIELDS,
            "severity",
            "affected_systems",
            "commander",
            "is_drill",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "loaded_state" in self.fields and self.instance.pk:
            self.fields["loaded_state"].initial = self.instance.state
        if "commander" in self.fields:
            self.fields["commander"].queryset = (
                get_user_model().objects.filter(is_active=True).order_by("first_name", "last_name", "username")
            )

    def clean_commander(self):
        commander = self.cleaned_data.get("commander")
        # Same rule as services.incident_assign_commander, as a field error instead of a 403.
        if (
            "commander" in self.changed_data
            and self.user is not None
            and commander != self.user
            and not self.user.has_perm("incidents.assign_commander")
        ):
            raise ValidationError("Only an incident manager may assign someone else as commander.")
        # The roles service's rule, as a field error here rather than a 500 from save_model.
        problem = (
            role_holder_problem(holder=commander, role=IncidentRole.COMMANDER)
            if "commander" in self.changed_data and commander is not None
            else ""
        )
        if problem:
            raise ValidationError(problem)
        return commander


class OpenFilter(admin.SimpleListFilter):
    title = "open or closed"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "Open"), ("no", "Resolved, closed or cancelled")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(state__in=OPEN_STATES)
        if self.value() == "no":
            return queryset.exclude(state__in=OPEN_STATES)
        return queryset


class TimelineEntryInline(ReadOnlyInline):
    model = TimelineEntry
    fields = ["occurred_at", "recorded_at", "kind", "action", "owner_display"]
    readonly_fields = fields
    ordering = ["occurred_at", "id"]
    verbose_name_plural = "timeline (append-only; add notes from the incident page)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")

    @admin.display(description="owner")
    def owner_display(self, obj: TimelineEntry) -> str:
        return obj.owner_label


class IncidentChecklistItemInline(ReadOnlyInline):
    model = IncidentChecklistItem
    fields = ["section", "text", "gates_containment", "done_at", "done_by", "ticked_by_portal_when"]
    readonly_fields = fields
    verbose_name_plural = "checklist"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("done_by", "template")


class IncidentRoleAssignmentInline(ReadOnlyInline):
    model = IncidentRoleAssignment
    fields = ["role", "holder", "assigned_by", "assigned_at", "ended_at", "ended_by"]
    readonly_fields = fields
    ordering = ["assigned_at", "id"]
    verbose_name_plural = "roles besides the commander (history; change them on the incident page)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("holder", "assigned_by", "ended_by")


class EvidenceAttachmentInline(ReadOnlyInline):
    model = EvidenceAttachment
    fields = [
        "file_link",
        "size_bytes",
        "sha256",
        "content_type",
        "description",
        "uploaded_by",
        "uploaded_at",
    ]
    readonly_fields = fields
    verbose_name_plural = "evidence (append-only)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("uploaded_by", "incident")

    @admin.display(description="file")
    def file_link(self, obj: EvidenceAttachment) -> str:
        return _evidence_link(obj)


def _evidence_link(obj: EvidenceAttachment) -> str:
    if not obj.file:
        return obj.original_name
    # Through the permission-checked download view: media files are not served directly.
    url = reverse("incidents:evidence_download", args=[obj.incident.reference, obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj.original_name)


_PHASE_TIMES = [
    "detected_at",
    "acknowledged_at",
    "acknowledged_by",
    "investigating_at",
    "contained_at",
    "recovering_at",
    "resolved_at",
    "review_started_at",
    "closed_at",
    "cancelled_at",
    "cancel_reason",
    "time_to_acknowledge_display",
    "time_to_resolve_display",
]
_REPORT_FIELDS = [
    "primary_cause",
    "contributing_factors",
    "resolution_actions",
    "verification_steps",
    "went_well",
    "could_improve",
    "prevention_immediate",
    "prevention_long_term",
    "monitoring_improvements",
]


@admin.register(Incident)
class IncidentAdmin(FSMAdminMixin, admin.ModelAdmin):
    form = IncidentAdminForm
    fsm_fields = ["state"]
    fsm_forms = {"cancel": CancelForm}

    list_display = [
        "reference",
        "title",
        "severity",
        "state",
        "category",
        "commander",
        "systems",
        "detected_at",
        "is_drill",
    ]
    list_display_links = ["reference", "title"]
    list_filter = [
        OpenFilter,
        "state",
        "severity",
        "category",
        "detection_method",
        "is_drill",
        ("affected_systems", admin.RelatedOnlyFieldListFilter),
        ("commander", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["severity", "commander"]
    search_fields = ["reference", "title", "description"]
    date_hierarchy = "detected_at"
    ordering = ["-detected_at"]
    show_full_result_count = False
    readonly_fields = [
        "reference",
        "state",
        "reported_by",
        "is_drill",
        *_PHASE_TIMES,
        "created_at",
        "updated_at",
    ]
    inlines = [
        TimelineEntryInline,
        IncidentRoleAssignmentInline,
        IncidentChecklistItemInline,
        EvidenceAttachmentInline,
    ]

    add_fieldsets = [
        (
            None,
            {
                "fields": [
                    "title",
                    "severity",
                    "category",
                    "detection_method",
                    "description",
                    "affected_systems",
                    "financial_impact_usd",
                    "user_impact",
                    "started_at",
                    "commander",
                    "is_drill",
                ]
            },
        ),
    ]
    change_fieldsets = [
        (
            None,
            {
                "fields": [
                    "reference",
                    "title",
                    "state",
                    "severity",
                    "category",
                    "detection_method",
                    "is_drill",
                    "loaded_state",
                ]
            },
        ),
        ("People", {"fields": ["reported_by", "commander"]}),
        (
            "Impact",
            {"fields": ["description", "affected_systems", "financial_impact_usd", "user_impact"]},
        ),
        (
            "Times",
            {
                "description": "Start and end time are when the problem began and ended; the phase "
                "times below are set by the lifecycle and cannot be edited.",
                "fields": ["started_at", "ended_at", *_PHASE_TIMES, "created_at", "updated_at"],
            },
        ),
        ("Incident report", {"classes": ["collapse"], "fields": _REPORT_FIELDS}),
    ]

    # -- lists --------------------------------------------------------------------------

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("affected_systems")

    @admin.display(description="affected systems")
    def systems(self, obj: Incident) -> str:
        return ", ".join(s.name for s in obj.affected_systems.all()) or "—"

    @admin.display(description="time to acknowledge")
    def time_to_acknowledge_display(self, obj: Incident) -> str:
        return _duration(obj.time_to_acknowledge)

    @admin.display(description="time to resolve")
    def time_to_resolve_display(self, obj: Incident) -> str:
        return _duration(obj.time_to_resolve)

    # -- permissions --------------------------------------------------------------------

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # incidents are never deleted; a false alarm is cancelled

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))

    # -- forms --------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_inlines(self, request, obj):
        return [] if obj is None else self.inlines

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        if obj is None and "started_at" in form.base_fields:
            form.base_fields["started_at"].required = False
            form.base_fields["started_at"].help_text = "When the problem began. Blank: now."
        return form

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # No "add / change / delete related" buttons: editing a severity level or a user
        # from inside an incident would bypass the policy and user pages.
        if field is not None and isinstance(field.widget, RelatedFieldWidgetWrapper):
            field.widget.can_add_related = False
            field.widget.can_change_related = False
            field.widget.can_delete_related = False
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "affected_systems":
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj: Incident, form, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            incident = services.incident_open(
                title=data["title"],
                severity=data["severity"],
                reported_by=request.user,
                detection_method=data["detection_method"],
                description=data.get("description", ""),
                category=data["category"],
                affected_systems=data.get("affected_systems") or (),
                financial_impact_usd=data.get("financial_impact_usd"),
                user_impact=data.get("user_impact", ""),
                started_at=data.get("started_at"),
                commander=data.get("commander"),
                is_drill=data.get("is_drill", False),
            )
            # The admin goes on to log and redirect with the form's instance: make it the
            # incident the service opened.
            obj.pk = incident.pk
            obj.refresh_from_db()
            obj._state.adding = False
            return
        changed = set(form.changed_data)
        services.incident_update(
            incident=obj,
            user=request.user,
            severity=data["severity"] if "severity" in changed else None,
            affected_systems=data["affected_systems"] if "affected_systems" in changed else None,
            **{name: data[name] for name in services.EDITABLE_FIELDS if name in changed},
        )
        if "commander" in changed:
            # The roles service, as on the incident page: the new commander is paged.
            if data["commander"] is None:
                services.incident_role_release(incident=obj, role=IncidentRole.COMMANDER, by=request.user)
            else:
                services.incident_role_assign(
                    incident=obj, role=IncidentRole.COMMANDER, holder=data["commander"], by=request.user
                )
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change: bool) -> None:
        # No form.save_m2m(): affected_systems went through the service in save_model. The
        # inlines are read-only, so saving their formsets writes nothing.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    # -- lifecycle ----------------------------------------------------------------------

    @staticmethod
    def get_fsm_block_label(fsm_field_name: str) -> str:
        return "Move the incident"

    def get_help_text(self, transition) -> str:
        # The mixin prints this on the reason form and as the button's tooltip ("None" if unset).
        if transition.name == "cancel":
            return "Cancel a false alarm. The reason is recorded on the timeline."
        return transition.custom.get("help_text") or ""

    def _get_fsm_extra_context(self, *, request, obj):
        # A view-only user sees no buttons: pressing one would post the change form (403).
        if obj is None or not self.has_change_permission(request, obj):
            return iter(())
        return super()._get_fsm_extra_context(request=request, obj=obj)

    def response_change(self, request, obj):
        name = request.POST.get(self.fsm_post_param)
        if name and name not in TRANSITION_NAMES:
            # The mixin would look the name up as an attribute and fail with a 500.
            self.message_user(request, f"Unknown action “{name}”.", messages.ERROR)
            return http.HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def fsm_transition_view(self, request, object_id, transition_name, **kwargs):
        if transition_name not in TRANSITION_NAMES:
            raise http.Http404(f"No action “{transition_name}”.")
        obj = self.get_object(request, object_id)
        if obj is not None and not self.has_change_permission(request, obj):
            raise PermissionDenied
        return super().fsm_transition_view(request, object_id, transition_name, **kwargs)

    def _apply_fsm_transition(self, *, obj, transition_name, request, kwargs=None) -> bool:
        kwargs = dict(kwargs or {})
        loaded_state = request.POST.get("loaded_state") or None
        if loaded_state not in State.values:
            loaded_state = None
        label = transition_name.replace("_", " ").capitalize()
        if transition_name in TRANSITION_NAMES:
            meta = getattr(obj, transition_name)._django_fsm.get_transition(obj.state)
            if meta is not None:
                label = meta.custom.get("label", label)
        try:
            services.incident_transition(
                incident=obj,
                name=transition_name,
                user=request.user,
                expected_state=loaded_state,
                reason=kwargs.get("reason", ""),
            )
        except services.IncidentChangedError as exc:
            error = str(exc) or services.IncidentChangedError.message
        except (services.TransitionRefusedError, PermissionDenied) as exc:
            error = str(exc) or "You do not have permission for this action."
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            self.message_user(
                request,
                f"{label}: the incident is now {obj.get_state_display().lower()}.",
                messages.SUCCESS,
            )
            return True
        self.message_user(request, f"{label} was not done: {error}", messages.ERROR)
        return False


# -- append-only history ---------------------------------------------------------------------


@admin.register(TimelineEntry)
class TimelineEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "incident",
        "kind",
        "short_action",
        "owner_display",
        "recorded_at",
    ]
    list_filter = ["kind", "incident__is_drill"]
    list_select_related = ["incident", "owner"]
    search_fields = [
        "action",
        "owner_team",
        "owner__username",
        "incident__reference",
        "incident__title",
    ]
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at", "-id"]
    show_full_result_count = False
    fields = [
        "incident",
        "kind",
        "action",
        "owner",
        "owner_team",
        "occurred_at",
        "recorded_at",
        "from_state",
        "to_state",
        "data",
    ]
    readonly_fields = fields

    @admin.display(description="action")
    def short_action(self, obj: TimelineEntry) -> str:
        return obj.action if len(obj.action) <= 120 else obj.action[:119] + "…"

    @admin.display(description="owner")
    def owner_display(self, obj: TimelineEntry) -> str:
        return obj.owner_label


@admin.register(EvidenceAttachment)
class EvidenceAttachmentAdmin(ReadOnlyAdmin):
    list_display = ["uploaded_at", "incident", "file_link", "size_bytes", "sha256", "uploaded_by"]
    list_filter = ["content_type"]
    list_select_related = ["incident", "uploaded_by"]
    search_fields = ["original_name", "description", "sha256", "incident__reference"]
    date_hierarchy = "uploaded_at"
    ordering = ["-uploaded_at", "-id"]
    fields = [
        "incident",
        "file_link",
        "original_name",
        "content_type",
        "size_bytes",
        "sha256",
        "description",
        "uploaded_by",
        "uploaded_at",
    ]
    readonly_fields = fields

    @admin.display(description="file")
    def file_link(self, obj: EvidenceAttachment) -> str:
        return _evidence_link(obj)


@admin.register(IncidentChecklistItem)
class IncidentChecklistItemAdmin(ReadOnlyAdmin):
    list_display = ["incident", "section", "text", "gates_containment", "done_at", "done_by"]
    list_filter = ["section", "gates_containment", ("done_at", admin.EmptyFieldListFilter)]
    list_select_related = ["incident", "done_by", "template"]
    search_fields = ["text", "section", "incident__reference"]
    ordering = ["-incident__detected_at", "template__order", "order", "id"]
    readonly_fields = [
        "incident",
        "template",
        "section",
        "text",
        "order",
        "gates_containment",
        "done_at",
        "done_by",
        "action_key",
        "ticked_by_portal_when",
    ]
    actions = ["mark_done", "mark_not_done"]

    def has_tick_permission(self, request) -> bool:
        return request.user.has_perm("incidents.change_incidentchecklistitem")

    @admin.action(description="Tick selected items (through the checklist service)", permissions=["tick"])
    def mark_done(self, request, queryset) -> None:
        self._set_done(request, queryset, done=True)

    @admin.action(description="Un-tick selected items", permissions=["tick"])
    def mark_not_done(self, request, queryset) -> None:
        self._set_done(request, queryset, done=False)

    def _set_done(self, request, queryset, *, done: bool) -> None:
        changed, refused = 0, []
        for item in queryset:
            try:
                services.checklist_item_set_done(item=item, user=request.user, done=done)
            except ValidationError as exc:
                refused.append(f"{item.text}: {' '.join(exc.messages)}")
            else:
                changed += 1
        if changed:
            self.message_user(request, f"{changed} item(s) updated.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.ERROR)


@admin.register(IncidentDaySequence)
class IncidentDaySequenceAdmin(ReadOnlyAdmin):
    list_display = ["day", "last_number"]
    date_hierarchy = "day"
    ordering = ["-day"]
    readonly_fields = ["day", "last_number"]


# -- policy (seeded defaults, tuned by managers) ---------------------------------------------


@admin.register(SeverityLevel)
class SeverityLevelAdmin(admin.ModelAdmin):
    list_display = [
        "level",
        "name",
        "response_time",
        "response_next_business_day",
        "status_update_interval",
        "financial_threshold_usd",
        "threshold_inclusive",
    ]
    list_display_links = ["level", "name"]
    list_editable = [
        "response_time",
        "response_next_business_day",
        "status_update_interval",
        "financial_threshold_usd",
        "threshold_inclusive",
    ]
    search_fields = ["name", "definition", "examples"]
    ordering = ["level"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the four levels are the procedure's; incidents point at them

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


@admin.register(RecoveryPointObjective)
class RecoveryPointObjectiveAdmin(admin.ModelAdmin):
    list_display = ["name", "rpo"]
    list_editable = ["rpo"]
    search_fields = ["name"]
    ordering = ["rpo"]


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "tier", "rto", "rpo_class", "outage_severity"]
    # Only the RTO inline: a foreign-key select per row would cost a query per row.
    list_editable = ["rto"]
    list_filter = ["tier", "rpo_class", "outage_severity"]
    list_select_related = ["rpo_class", "outage_severity"]
    search_fields = ["name", "key"]
    ordering = ["tier", "rto", "name"]
    prepopulated_fields = {"key": ["name"]}

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a system would silently drop it from past incidents' affected systems
        # (the M2M rows cascade), rewriting history.
        if obj is not None and obj.incidents.exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


@admin.register(PhaseTarget)
class PhaseTargetAdmin(admin.ModelAdmin):
    list_display = ["phase", "target", "measured_from"]
    list_editable = ["target"]
    readonly_fields = ["measured_from"]
    ordering = ["target"]

    def has_add_permission(self, request) -> bool:
        # The phases are the procedure's, seeded. Detection and initial response has no row: its
        # target is each severity's response time (Severity levels).
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the phases are the procedure's; tune the target instead

    def get_actions(self, request):
        return _without_delete_selected(super().get_actions(request))


class ChecklistTemplateItemInline(admin.TabularInline):
    model = ChecklistTemplateItem
    fields = ["order", "text", "action_key"]
    extra = 1


@admin.register(ChecklistTemplate)
class ChecklistTemplateAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "attach_on_state",
        "category",
        "gates_containment",
        "item_count",
        "order",
        "active",
    ]
    list_editable = ["order", "active"]
    list_filter = ["attach_on_state", "category", "gates_containment", "active"]
    search_fields = ["name", "slug", "items__text"]
    ordering = ["order", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ChecklistTemplateItemInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_item_count=Count("items"))

    @admin.display(description="items", ordering="_item_count")
    def item_count(self, obj: ChecklistTemplate) -> int:
        return obj._item_count


@admin.register(ChecklistTemplateItem)
class ChecklistTemplateItemAdmin(admin.ModelAdmin):
    list_display = ["text", "template", "order", "action_key"]
    list_editable = ["order", "action_key"]
    list_filter = ["template", "action_key"]
    list_select_related = ["template"]
    search_fields = ["text", "template__name"]
    ordering = ["template__order", "template__name", "order", "id"]


# -- form checks and mixins the sub-apps' admins share --------------------------------------


def active_users():
    return get_user_model().objects.filter(is_active=True).order_by("first_name", "last_name", "username")


class UserChoiceMixin:
    """Only active people, by name: a disabled account must not be put on call."""

    user_fields: tuple[str, ...] = ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.user_fields:
            kwargs["queryset"] = active_users()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def not_negative(form: forms.ModelForm, *names: str, positive: bool = False) -> None:
    """DurationField accepts "-1 day"; a negative delay would fire a step before its cause."""
    for name in names:
        value = form.cleaned_data.get(name)
        if value is None:
            continue
        if value < timedelta(0) or (positive and value == timedelta(0)):
            form.add_error(name, "Must be longer than zero." if positive else "Cannot be negative.")


def known_severity_level(form: forms.ModelForm, name: str) -> None:
    level = form.cleaned_data.get(name)
    if level is None:
        return
    levels = sorted(SeverityLevel.objects.values_list("level", flat=True))
    if levels and level not in levels:
        form.add_error(name, f"Use a severity level that exists ({', '.join(map(str, levels))}).")


def save_allowing_swaps(formset) -> None:
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


@admin.register(BusinessHoliday)
class BusinessHolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "name"]
    search_fields = ["name"]
    date_hierarchy = "date"
    ordering = ["-date"]
