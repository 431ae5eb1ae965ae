"""Issuing and revoking machine credentials (issue #7). The raw token is returned once, never stored."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..models import AlertIntegration, ApiToken
from ..models.api import TOKEN_PREFIX_LENGTH, hash_token, new_token


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new personal token for `user`; the caller shows the returned raw token once."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after the script or machine that uses it."})
    raw = new_token()
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:TOKEN_PREFIX_LENGTH], key_hash=hash_token(raw))
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke at once; the row stays, so who had which token remains on record."""
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
        token.refresh_from_db(fields=["revoked_at"])
    return token


@transaction.atomic
def alert_integration_issue_token(*, integration: AlertIntegration) -> str:
    """Give an integration a new token (at creation, or rotating a leaked one); the old one stops working."""
    raw = new_token()
    integration.prefix = raw[:TOKEN_PREFIX_LENGTH]
    integration.key_hash = hash_token(raw)
    if integration.pk:
        integration.save(update_fields=["prefix", "key_hash"])
    else:
        integration.save()
    return raw
