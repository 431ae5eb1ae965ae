"""The public status page, its JSON, feed and banner script (no login, cached), the subscription
pages (no login, rate-limited), and the pages where communications roles publish (login)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.contrib.syndication.views import Feed
from django.core.cache import cache as django_cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from incidents.forms import ISODateTimeInput
from incidents.models import OPEN_STATES, Incident, System
from incidents.status import cache, selectors, services
from incidents.status.models import Maintenance, PublicImpact, PublicIncident, PublicStatus

EMBED_JS = Path(settings.BASE_DIR) / "static" / "js" / "status_embed.js"


# -- the public page and its twins -------------------------------------------------------------


def _snapshot() -> dict:
    return cache.cached("snapshot", selectors.public_status)


def _public(content: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Cache-Control"] = f"public, max-age={settings.TMT_STATUS_CACHE_SECONDS}"
    return response


@login_not_required
@require_GET
def status_page(request: HttpRequest) -> HttpResponse:
    html = cache.cached("page", lambda: render_to_string("status/status.html", {"status": _snapshot()}).encode())
    return _public(html, "text/html; charset=utf-8")


def _json_bytes() -> bytes:
    return json.dumps(_snapshot(), cls=DjangoJSONEncoder, separators=(",", ":")).encode()


@login_not_required
@require_GET
def status_json(request: HttpRequest) -> HttpResponse:
    return _public(cache.cached("json", _json_bytes), "application/json")


@login_not_required
@require_GET
def embed_js(request: HttpRequest) -> HttpResponse:
    return _public(cache.cached("embed", EMBED_JS.read_bytes), "application/javascript; charset=utf-8")


class StatusFeed(Feed):
    """Every public update and maintenance notice of the history window, newest first."""

    feed_type = Atom1Feed
    title = "TMT system status"
    subtitle = "Incidents and maintenance published on the TMT status page."

    def link(self) -> str:
        return reverse("status")

    def items(self) -> list[dict]:
        snap = _snapshot()
        entries = []
        for incident in snap["incidents"] + snap["history"]:
            for n, update in enumerate(incident["updates"]):
                entries.append(
                    {
                        "id": f"incident-{incident['id']}-{len(incident['updates']) - n}",
                        "title": f"{incident['title']}: {update['status_label']}",
                        "text": update["message"],
                        "at": update["published_at"],
                    }
                )
        for m in snap["maintenance"] + snap["maintenance_history"]:
            for n, notice in enumerate(m["notices"]):
                entries.append(
                    {
                        "id": f"maintenance-{m['id']}-{len(m['notices']) - n}",
                        "title": f"Maintenance {notice['state_label'].lower()}: {m['title']}",
                        "text": notice["message"],
                        "at": notice["published_at"],
                    }
                )
        return sorted(entries, key=lambda e: e["at"], reverse=True)[:100]

    def item_title(self, item: dict) -> str:
        return item["title"]

    def item_description(self, item: dict) -> str:
        return item["text"]

    def item_link(self, item: dict) -> str:
        return f"{reverse('status')}#{item['id'].rsplit('-', 1)[0]}"

    def item_guid(self, item: dict) -> str:
        return item["id"]

    item_guid_is_permalink = False

    def item_pubdate(self, item: dict):
        return item["at"]

    def item_updateddate(self, item: dict):
        return item["at"]


_feed = StatusFeed()


@login_not_required
@require_GET
def status_feed(request: HttpRequest) -> HttpResponse:
    response = _feed(request)
    response["Cache-Control"] = f"public, max-age={settings.TMT_STATUS_CACHE_SECONDS}"
    return response


# -- subscriptions ----------------------------------------------------------------------------------


class SubscribeForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("email", "Email"), ("webhook", "Webhook")], initial="email", widget=forms.RadioSelect
    )
    email = forms.CharField(required=False, max_length=254)
    url = forms.CharField(label="Webhook URL", required=False, max_length=500)
    components = forms.MultipleChoiceField(required=False, choices=[], widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # What the public page shows: hidden components are not offered, public names are used.
        self.fields["components"].choices = selectors.public_components(list(System.objects.order_by("name")))
        # Unknown keys are the service's to report (a clearer message than Django's choice error).
        self.fields["components"].valid_value = lambda value: True


class RateLimited(Exception):
    pass


def _count(key: str, limit: int) -> None:
    """One more request under `key` this hour; RateLimited above `limit`."""
    # Hashed: the key holds what a stranger typed (any length, any character).
    full = "status:subscribe:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    django_cache.add(full, 0, 3600)
    try:
        n = django_cache.incr(full)
    except ValueError:  # expired between add and incr
        django_cache.set(full, 1, 3600)
        n = 1
    if n > limit:
        raise RateLimited


def _client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


FLOOD = "Too many subscription requests from here; nothing was sent. Try again in an hour."


@login_not_required
@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "status/subscribe.html", {"form": SubscribeForm()})
    form = SubscribeForm(request.POST)
    ip = _client_ip(request)
    try:
        _count(f"ip:{ip}", settings.TMT_STATUS_SUBSCRIBE_PER_IP_HOUR)
        if form.is_valid():
            target = form.cleaned_data["email"] if form.cleaned_data["kind"] == "email" else form.cleaned_data["url"]
            if target.strip():
                _count(f"to:{target.strip().lower()}", settings.TMT_STATUS_SUBSCRIBE_PER_ADDRESS_HOUR)
    except RateLimited:
        return render(request, "status/subscribe.html", {"form": form, "flood": FLOOD}, status=429)
    if form.is_valid():
        data = form.cleaned_data
        try:
            if data["kind"] == "email":
                services.subscriber_subscribe_email(email=data["email"], components=data["components"], client_ip=ip)
                return render(request, "status/subscribe_done.html", {"email": data["email"].strip()})
            subscriber, secret = services.subscriber_subscribe_webhook(
                url=data["url"], components=data["components"], client_ip=ip
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            unsubscribe = services.absolute_url("status_unsubscribe", subscriber.unsubscribe_token)
            return render(
                request,
                "status/subscribe_done.html",
                {
                    "webhook": subscriber,
                    "secret": secret,
                    "unsubscribe": unsubscribe,
                    "header": services.SIGNATURE_HEADER,
                },
            )
    return render(request, "status/subscribe.html", {"form": form}, status=400)


@login_not_required
@require_http_methods(["GET", "POST"])
def subscribe_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (a mail scanner following the link confirms nothing); POST confirms."""
    if request.method == "GET":
        return render(request, "status/token_action.html", {"action": "confirm"})
    try:
        subscriber = services.subscriber_confirm(token=token)
    except ValidationError as exc:
        return render(request, "status/token_action.html", {"error": " ".join(exc.messages)}, status=404)
    return render(request, "status/token_action.html", {"done": "confirm", "subscriber": subscriber})


@login_not_required
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "GET":
        return render(request, "status/token_action.html", {"action": "unsubscribe"})
    try:
        subscriber = services.subscriber_unsubscribe(token=token)
    except ValidationError as exc:
        return render(request, "status/token_action.html", {"error": " ".join(exc.messages)}, status=404)
    return render(request, "status/token_action.html", {"done": "unsubscribe", "subscriber": subscriber})


# -- publishing (communications roles) -------------------------------------------------------------


class PublishForm(forms.Form):
    title = forms.CharField(label="Public title", max_length=200)
    impact = forms.ChoiceField(choices=PublicImpact.choices)
    status = forms.ChoiceField(choices=[c for c in PublicStatus.choices if c[0] != PublicStatus.RESOLVED])
    message = forms.CharField(label="Message for customers", widget=forms.Textarea(attrs={"rows": 5}))
    components = forms.ModelMultipleChoiceField(
        queryset=System.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple
    )


class PublicUpdateForm(forms.Form):
    status = forms.ChoiceField(choices=PublicStatus.choices)
    message = forms.CharField(label="Message for customers", widget=forms.Textarea(attrs={"rows": 4}))


class MaintenanceForm(forms.Form):
    title = forms.CharField(max_length=200)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    starts_at = forms.DateTimeField(widget=ISODateTimeInput())
    ends_at = forms.DateTimeField(widget=ISODateTimeInput())
    components = forms.ModelMultipleChoiceField(
        queryset=System.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple
    )


def _form_errors(form: forms.Form, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@require_GET
def manage(request: HttpRequest) -> HttpResponse:
    if not (request.user.has_perm("status.publish_status") or request.user.has_perm("status.announce_maintenance")):
        raise PermissionDenied
    snap = selectors.public_status()
    unpublished = Incident.objects.filter(state__in=OPEN_STATES, is_drill=False, public_incident__isnull=True)
    return render(
        request,
        "status/manage.html",
        {
            "status": snap,
            "unpublished": unpublished,
            "maintenance_form": MaintenanceForm(),
            "public_incidents": PublicIncident.objects.filter(resolved_at__isnull=True).order_by("-published_at"),
            "maintenance": Maintenance.objects.filter(
                state__in=[Maintenance.State.SCHEDULED, Maintenance.State.IN_PROGRESS]
            ),
        },
    )


@permission_required("status.publish_status", raise_exception=True)
@require_http_methods(["GET", "POST"])
def publish(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("severity"), reference=reference)
    existing = PublicIncident.objects.filter(incident=incident).first()
    if existing is not None:
        return redirect("status_public_update", existing.pk)
    if request.method == "POST":
        form = PublishForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.public_incident_publish(
                    incident=incident,
                    user=request.user,
                    title=data["title"],
                    impact=data["impact"],
                    status=data["status"],
                    message=data["message"],
                    systems=data["components"],
                )
            except ValidationError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, "Published on the public status page; subscribers are being notified.")
                return redirect(incident.get_absolute_url())
    else:
        draft = selectors.public_draft(incident=incident)
        form = PublishForm(initial={**draft, "components": list(incident.affected_systems.all())})
    return render(
        request, "status/publish.html", {"incident": incident, "form": form}, status=400 if form.errors else 200
    )


@permission_required("status.publish_status", raise_exception=True)
@require_http_methods(["GET", "POST"])
def public_update(request: HttpRequest, pk: int) -> HttpResponse:
    public = get_object_or_404(PublicIncident.objects.select_related("incident"), pk=pk)
    if request.method == "POST":
        form = PublicUpdateForm(request.POST)
        if form.is_valid():
            try:
                services.public_incident_update(public_incident=public, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, "Update published; subscribers are being notified.")
                return redirect(public.incident.get_absolute_url())
    else:
        form = PublicUpdateForm(initial={"status": public.status})
    return render(
        request,
        "status/public_update.html",
        {"public": public, "updates": public.updates.all(), "form": form},
        status=400 if form.errors else 200,
    )


@permission_required("status.announce_maintenance", raise_exception=True)
@require_POST
def maintenance_new(request: HttpRequest) -> HttpResponse:
    form = MaintenanceForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.maintenance_schedule(
                user=request.user,
                title=data["title"],
                message=data["message"],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                systems=data["components"],
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Maintenance announced; subscribers are being notified.")
            return redirect("status_manage")
    return render(request, "status/maintenance_form.html", {"form": form}, status=400)


@permission_required("status.announce_maintenance", raise_exception=True)
@require_POST
def maintenance_step(request: HttpRequest, pk: int, step: str) -> HttpResponse:
    maintenance = get_object_or_404(Maintenance, pk=pk)
    try:
        services.maintenance_advance(
            maintenance=maintenance, user=request.user, step=step, message=request.POST.get("message", "")[:2000]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Maintenance “{maintenance.title}”: {step} notice published.")
    return redirect("status_manage")
