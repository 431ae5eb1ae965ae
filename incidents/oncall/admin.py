"""Admin for the roster: people, role contacts, rotations and overrides (who is paged).

Configuration the incident manager maintains here. Every refusal is a field or formset error on the
page: nothing half-saved, no 500. The drills app adds its readiness gate to the member and override
forms (drills/admin.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from incidents.admin import (
    UserChoiceMixin,
    save_allowing_swaps,
)
from incidents.oncall.models import (
    OnCallOverride,
    OnCallRotation,
    Person,
    RoleContact,
    RotationMember,
)


@admin.register(Person)
class PersonAdmin(UserChoiceMixin, admin.ModelAdmin):
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
            form.base_fields["timezone"].help_text = "IANA name, e.g. Europe/London or America/New_York."
        return form


def _phone(user) -> str:
    person = getattr(user, "person", None) if user is not None else None
    return (person.phone if person else "") or "—"


@admin.register(RoleContact)
class RoleContactAdmin(UserChoiceMixin, admin.ModelAdmin):
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


class RotationMemberInline(UserChoiceMixin, admin.TabularInline):
    model = RotationMember
    user_fields = ("user",)
    fields = ["position", "user"]
    ordering = ["position"]
    extra = 1
    verbose_name_plural = "members (in rotation order: position 0 takes the first shift)"


class OnCallOverrideInline(UserChoiceMixin, admin.TabularInline):
    model = OnCallOverride
    user_fields = ("user",)
    fields = ["user", "starts_at", "ends_at", "reason", "created_by"]
    readonly_fields = ["created_by"]
    extra = 0
    verbose_name_plural = (
        "overrides: holiday covers and swaps (current and upcoming; past ones under On-call overrides)"
    )

    def get_queryset(self, request):
        # Past covers pile up; they stay visible on the overrides' own list.
        return super().get_queryset(request).filter(ends_at__gt=timezone.now()).select_related("user", "created_by")


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
            save_allowing_swaps(formset)
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
class OnCallOverrideAdmin(UserChoiceMixin, admin.ModelAdmin):
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
