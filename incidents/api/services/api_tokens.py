"""Issuing and revoking machine credentials. The raw token is returned once, never stored."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.api.models import (
    TOKEN_PREFIX_LENGTH,
    AlertIntegration,
    ApiToken,
    hash_token,
    new_token,
)

# Enough for every script a person runs; more usually means old tokens nobody revoked.
MAX_ACTIVE_TOKENS = 20


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new personal token for `user`; the caller shows the returned raw token once."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after the script or machine that uses it."})
    # Counted under the user's row lock, so two requests cannot both slip under the limit.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    if ApiToken.objects.filter(user=user, revoked_at=None).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError(
            {"name": f"{user.get_username()} has {MAX_ACTIVE_TOKENS} active tokens; revoke one no longer used first."}
        )
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
