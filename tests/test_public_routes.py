"""Every route that answers without a login, each with the reason it may.

LoginRequiredMiddleware guards every view unless it is marked @login_not_required; this list
fails when a route is marked (or unmarked) without saying why here. The API's routes answer
401/403 themselves (DRF authentication) and are left to tests/test_permission_parity.py.
"""

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

PUBLIC = {
    "favicon.ico": "browsers ask every site for it",
    "accounts/login/": "logging in",
    "admin/login/": "the admin's own login",
    "status/": "the public status page",
    "status.json": "the public status page's JSON",
    "status/embed.js": "the status banner script the trading platform's own pages load",
    "status/feed.atom": "the status page's feed: feed readers cannot log in",
    "status/subscribe/": "customers subscribe to the status page without an account",
    "status/subscribe/confirm/<str:token>/": "the opt-in link in the confirmation mail (its token is the address)",
    "status/unsubscribe/<str:token>/": "the unsubscribe link in every status mail: its token stands for the subscriber",
    "ack/<str:token>/": "the one-tap acknowledgement link in a page: its token stands for the paged person",
    "provider/sms/": "the SMS provider's webhook: authenticated by its signature, not a session",
    "provider/voice/": "the voice provider's webhook: authenticated by its signature, not a session",
    "drills/calendar/feed/<str:token>/mine.ics": "calendar apps cannot log in: the token stands for the person",
    "drills/calendar/feed/<str:token>/programme.ics": "calendar apps cannot log in: the token stands for the person",
}


def _public_routes() -> set[str]:
    found: set[str] = set()

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
            elif namespace != "api" and getattr(pattern.callback, "login_required", True) is False:
                found.add(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "", None)
    return found


def test_every_route_without_a_login_is_listed_with_its_reason():
    assert _public_routes() == set(PUBLIC)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/ack/" + "0" * 64 + "/", "/provider/sms/", "/provider/voice/"])
def test_the_acknowledgement_routes_answer_without_sending_to_the_login(path):
    client = Client()
    answer = client.post(path) if path.startswith("/provider/") else client.get(path)
    assert answer.status_code in (403, 404, 503), answer.status_code
    assert "login" not in answer.get("Location", "")
