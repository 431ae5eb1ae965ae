"""The SMS/voice provider's webhook signature: HMAC-SHA256 over a timestamp and the raw body.

Modelled on the signatures of Stripe, Slack and Vonage's signed webhooks: the header

    X-TMT-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

binds the body to the moment it was signed, so a captured request cannot be replayed once the
window has passed, and the digest is compared in constant time. Pure Python with no Django
import: the agent simulator's pager signs its replies with the same function.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-TMT-Signature"


class SignatureError(ValueError):
    """The request does not carry a valid, current signature (the message says which part)."""


def sign(body: bytes, *, secret: str, timestamp: int | None = None) -> str:
    """The header value for `body` signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(body, secret=secret, timestamp=t)}"


def verify(body: bytes, header: str, *, secret: str, window_s: int, now: float | None = None) -> int:
    """Check `header` against `body`; returns the signed timestamp or raises SignatureError.

    Accepted while |now - t| <= window_s (the clocks of two hosts differ a little either way).
    """
    if not secret:
        raise SignatureError("No webhook secret is configured (TMT_SMS_PROVIDER_WEBHOOK_SECRET).")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()) or len(stamps[0]) > 12:
        raise SignatureError(f"The {HEADER} header has no timestamp (t=<unix seconds>).")
    t = int(stamps[0])
    now = time.time() if now is None else now
    if abs(now - t) > window_s:
        raise SignatureError(f"The signature's timestamp is more than {window_s} s from now: refused as a replay.")
    expected = _digest(body, secret=secret, timestamp=t)
    # Every v1 is compared (a provider rotating its secret sends two); compare_digest takes the
    # same time whatever the first differing byte, so the digest cannot be guessed byte by byte.
    if not any(hmac.compare_digest(expected.encode(), given.encode()) for given in parts.get("v1", [])):
        raise SignatureError("The signature does not match the body.")
    return t


def _digest(body: bytes, *, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
