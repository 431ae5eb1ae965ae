"""Token authentication for machines: per-user API tokens and per-integration alert tokens.

Both are sent as `Authorization: Bearer <token>` (`Token <token>` is accepted too: DRF's own
keyword, which scripts written against other DRF services use). Only a SHA-256 of each token is
stored, so a database dump does not hand out working tokens; lookups are by that hash.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from incidents.api.models import AlertIntegration, ApiToken, hash_token

from .throttling import FailedAuthenticationThrottle

_KEYWORDS = {b"bearer", b"token"}
# Recording every use would turn each read into a write; a minute's precision is enough to see
# which tokens are still in use before revoking them.
LAST_USED_PRECISION = timedelta(minutes=1)


def _raw_token(request) -> str | None:
    """The token in the Authorization header, None if the header is absent or of another scheme."""
    parts = authentication.get_authorization_header(request).split()
    if not parts or parts[0].lower() not in _KEYWORDS:
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Invalid Authorization header: expected “Bearer <token>”.")
    try:
        return parts[1].decode()
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("Invalid token: it must be plain text.") from exc


def _refuse(request, message: str):
    """Refuse a token that matched nothing, counting it against the client's address.

    An address that sent too many gets 429 instead of 401, but only for tokens that match
    nothing: the lookup comes first, so a valid token is never refused because someone else
    behind the same address (a proxy, a NAT) guessed wrong. Tokens are 256 random bits, so the
    lookup tells a guesser nothing; the count is what makes guessing loud and slow.
    """
    throttle = FailedAuthenticationThrottle()
    wait = throttle.wait_if_blocked(request)
    if wait is not None:
        raise exceptions.Throttled(wait, detail="Too many refused tokens from this address.")
    throttle.record_failure(request)
    raise exceptions.AuthenticationFailed(message)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """A user's API token: requests run as that user, with that user's role permissions."""

    def authenticate(self, request):
        raw = _raw_token(request)
        if raw is None:
            return None
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
        if token is None or token.revoked_at is not None:
            _refuse(request, "Invalid or revoked API token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when credentials are missing.
        return 'Bearer realm="api"'


_INTEGRATION_SQL = f"SELECT * FROM {AlertIntegration._meta.db_table} WHERE key_hash = %s"  # noqa: S608 - a table name


class AlertIntegrationAuthentication(authentication.BaseAuthentication):
    """A monitoring integration's token: request.user is its reporter, request.auth the integration."""

    def authenticate(self, request):
        raw = _raw_token(request)
        if raw is None:
            return None
        # Hand-written SQL, and the reporter read only when an alert opens or raises an incident:
        # every alert runs this, and the ORM's select_related query cost 0.65 ms of CPU to build
        # against 0.2 ms for this, about a sixth of a re-sent alert's CPU (bench/api.py).
        integration = next(iter(AlertIntegration.objects.raw(_INTEGRATION_SQL, [hash_token(raw)])), None)
        if integration is None or not integration.active or integration.revoked_at is not None:
            _refuse(request, "Invalid or revoked integration token.")
        # Lazy, as Django's own request.user is: the integration's reporter is read on first use.
        return SimpleLazyObject(lambda: integration.reporter), integration

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="alerts"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "incidents.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API token (Admin → API tokens)."}


class AlertIntegrationScheme(OpenApiAuthenticationExtension):
    target_class = "incidents.api.authentication.AlertIntegrationAuthentication"
    name = "integrationToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An alert integration's token (Admin → Alert integrations).",
        }
