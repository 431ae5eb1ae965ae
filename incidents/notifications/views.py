"""Acknowledging from the page: the one-tap link's page, and the provider's signed webhooks.

The link's page is the one page besides the status page and login that needs no login: its
token stands for the paged person on one incident (acks.py). The webhooks are for the SMS/voice
provider, not people: no session, no CSRF token, a signature instead (signatures.py).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.throttling import SimpleRateThrottle

from incidents.notifications import acks, selectors, signatures
from incidents.notifications.models import ProviderReply


class AckLinkThrottle(SimpleRateThrottle):
    """Requests to link pages per client address (X-Forwarded-For read as the API's throttles
    read it): a responder taps once or twice, a guesser of tokens is held to a trickle."""

    scope = "ack_link"

    def get_rate(self) -> str:
        return settings.TMT_ACK_LINK_THROTTLE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


@login_not_required
@never_cache
@ensure_csrf_cookie  # a tap after the page changed under it (someone else acknowledged) still gets an answer
@require_http_methods(["GET", "POST"])
def ack_link(request: HttpRequest, token: str) -> HttpResponse:
    throttle = AckLinkThrottle()
    if not throttle.allow_request(request, None):
        wait = int(throttle.wait() or 60) + 1
        response = _link_page(
            request,
            None,
            refused="Too many requests from your address. Wait a minute, then open the link again.",
            status=429,
        )
        response["Retry-After"] = str(wait)
        return response
    if request.method == "POST":
        try:
            outcome = acks.ack_link_redeem(raw=token)
        except acks.ReplyRefused as exc:
            return _link_page(request, selectors.ack_link_by_token(token), refused=exc.message, status=exc.status)
        return _link_page(request, selectors.ack_link_by_token(token), done=outcome.message)
    # What a tap would answer, in the same order, without writing anything.
    link = selectors.ack_link_by_token(token)
    problem = acks.ack_link_problem(link, now=timezone.now())
    if problem is None:
        done = acks.already_acknowledged(link.incident)
        if done is not None:
            return _link_page(request, link, done=done)
        problem = acks.closed_problem(link.incident)
    if problem is not None:
        return _link_page(request, link, refused=problem.message, status=problem.status)
    return _link_page(request, link)


def _link_page(request: HttpRequest, link, *, refused: str = "", done: str = "", status: int = 200) -> HttpResponse:
    # The incident's essentials only for a link the portal issued: a forged token learns nothing.
    context = {
        "link": link,
        "incident": link.incident if link is not None else None,
        "refused": refused,
        "done": done,
        "can_acknowledge": not refused and not done and link is not None,
        "channel": acks.link_channel_words(link) if link is not None else "",
    }
    response = render(request, "notifications/ack_link.html", context, status=status)
    # The token is in the URL: no Referer to another site. Not "no-referrer": Chromium then sends
    # "Origin: null" with the button's POST, which Django's CSRF check refuses.
    response["Referrer-Policy"] = "same-origin"
    return response


# -- the provider's webhooks ------------------------------------------------------------------


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": message}, status=status)


def _signed_json(request: HttpRequest) -> dict | JsonResponse:
    """The body as a JSON object, once its signature checks out; else the refusal to send."""
    if not settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET:
        return _refusal(503, "not_configured", "Provider webhooks are off: TMT_SMS_PROVIDER_WEBHOOK_SECRET is not set.")
    try:
        signatures.verify(
            request.body,
            request.headers.get(signatures.HEADER, ""),
            secret=settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET,
            window_s=settings.TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS,
        )
    except signatures.SignatureError as exc:
        return _refusal(403, "bad_signature", str(exc))
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _refusal(400, "invalid", "The body must be a JSON object.")
    if not isinstance(data, dict):
        return _refusal(400, "invalid", "The body must be a JSON object.")
    return data


def _field(data: dict, name: str, *, required: bool = True, limit: int = 200) -> str | JsonResponse:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        return _refusal(400, "invalid", f"“{name}” must be a non-empty string of at most {limit} characters.")
    return value


def _handle(request: HttpRequest, *, channel: str, text_field: str) -> JsonResponse:
    data = _signed_json(request)
    if isinstance(data, JsonResponse):
        return data
    fields = {}
    for name, required in (("id", True), ("from", True), (text_field, True), ("reference", False)):
        value = _field(data, name, required=required)
        if isinstance(value, JsonResponse):
            return value
        fields[name] = value
    try:
        outcome = acks.provider_reply_handle(
            channel=channel,
            provider_id=fields["id"],
            sender=fields["from"],
            text=fields[text_field],
            reference=fields["reference"].partition("/")[0],
        )
    except acks.ReplyRefused as exc:
        # "reply" is what a provider may text back to the sender.
        return JsonResponse({"error": exc.code, "detail": exc.message, "reply": exc.message}, status=exc.status)
    return JsonResponse(
        {"result": outcome.code, "incident": outcome.incident.reference, "reply": outcome.message}, status=200
    )


@login_not_required
@csrf_exempt
@require_POST
def provider_sms(request: HttpRequest) -> JsonResponse:
    """An SMS reply: {"id", "from", "body"} ("ACK", "4" or "ESC", optionally an incident reference)."""
    return _handle(request, channel=ProviderReply.Channel.SMS, text_field="body")


@login_not_required
@csrf_exempt
@require_POST
def provider_voice(request: HttpRequest) -> JsonResponse:
    """A keypress during a voice page: {"id", "from", "digits", "reference"?} ("4" acknowledges)."""
    return _handle(request, channel=ProviderReply.Channel.VOICE, text_field="digits")
