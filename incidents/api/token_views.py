""" "API tokens" page: each person issues and revokes their own tokens for scripts.

The raw token is on the page once, right after it is issued (kept only in this response, never in
the session or the database); afterwards the list shows its prefix and when it was last used.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from incidents.api.models import ApiToken
from incidents.api.services.api_tokens import api_token_create, api_token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What will use it, e.g. “runbook script on jump host”.",
        error_messages={"required": "Name the token after the script or machine that uses it."},
    )


@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            token, raw = api_token_create(user=request.user, name=form.cleaned_data["name"])
        except ValidationError as exc:
            form.add_error("name", exc.message_dict.get("name", exc.messages))
        else:
            issued = {"token": token, "raw": raw}
            form = TokenForm()
    tokens = ApiToken.objects.filter(user=request.user).order_by("revoked_at", "-created_at")
    response = render(
        request,
        "api/api_tokens.html",
        {"form": form, "tokens": tokens, "issued": issued},
        status=400 if form.errors else 200,
    )
    if issued:
        response["Cache-Control"] = "no-store"  # the only copy of the token: keep it out of caches
    return response


@require_POST
def api_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404("No such token")  # someone else's token is as good as absent
    api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked; scripts using it now get 401.")
    return redirect("api_tokens")
