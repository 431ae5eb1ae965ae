"""Personal API tokens in the admin: issued with the raw token shown once, revoked, never edited."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from incidents.api.models import ApiToken
from incidents.api.services.api_tokens import api_token_create, api_token_revoke


def token_once_response(
    request: HttpRequest, *, title: str, tokens: list[tuple[str, str]], back_url: str, note: str = ""
) -> HttpResponse:
    """The one page a raw token is ever on. Not a flash message: Django keeps those in a cookie
    (signed, not encrypted) or the session, so the token would outlive this response."""
    response = TemplateResponse(
        request,
        "admin/token_once.html",
        {**admin.site.each_context(request), "title": title, "tokens": tokens, "back_url": back_url, "note": note},
    )
    response["Cache-Control"] = "no-store"
    return response


class ApiTokenIssueForm(forms.ModelForm):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_active=True).order_by("username"))

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "status"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenIssueForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return (
            ["user", "name"] if obj is None else ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        )

    def get_readonly_fields(self, request, obj=None):
        # The hash is never shown and nothing of an issued token changes but its revocation.
        return [] if obj is None else ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, not deleted: who held which token stays on record

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, raw = api_token_create(user=form.cleaned_data["user"], name=form.cleaned_data["name"])
        obj.pk = token.pk
        obj.refresh_from_db()
        request._issued_api_token = raw  # for response_add only; never stored

    def response_add(self, request, obj, post_url_continue=None):
        return token_once_response(
            request,
            title=f"API token issued to {obj.user.get_username()}",
            tokens=[(obj.name, request._issued_api_token)],
            back_url=reverse("admin:api_apitoken_changelist"),
            note="Send it to its owner over a channel you trust.",
        )

    @admin.display(description="status")
    def status(self, obj: ApiToken) -> str:
        return f"revoked {timezone.localtime(obj.revoked_at):%Y-%m-%d %H:%M}" if obj.revoked_at else "active"

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        count = 0
        for token in queryset.filter(revoked_at=None):
            api_token_revoke(token=token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
