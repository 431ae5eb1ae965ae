"""Password guessing on both login forms is locked out per account and per address (django-axes);
admins see the attempts and lift a lock."""

import pytest
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3


@pytest.fixture
def priya():
    user = UserFactory(username="priya")
    user.set_password(PASSWORD)
    user.save()
    return user


def _login(path: str, username: str, password: str, *, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


def _logged_in(answer) -> bool:
    return answer.status_code == 302 and "_auth_user_id" in answer.wsgi_request.session


def test_two_failures_then_the_right_password_logs_in(priya):
    for _ in range(2):
        assert _login(LOGIN, "priya", "wrong").status_code == 200
    assert _logged_in(_login(LOGIN, "priya", PASSWORD))


@pytest.mark.parametrize("path", [LOGIN, ADMIN_LOGIN])
def test_the_third_failure_locks_the_account_even_for_the_right_password(priya, path):
    for _ in range(2):
        assert _login(path, "priya", "wrong").status_code == 200
    locked = _login(path, "priya", "wrong")
    assert locked.status_code == 429
    assert b'data-testid="login-locked"' in locked.content
    again = _login(path, "priya", PASSWORD)
    assert again.status_code == 429 and not _logged_in(again)
    # Per account: the same account from another address is locked too.
    assert _login(path, "priya", PASSWORD, address="10.0.0.2").status_code == 429


def test_failures_from_one_address_lock_that_address_for_every_account(priya):
    for name in ("a", "b", "c"):
        _login(LOGIN, name, "wrong", address="10.9.9.9")
    assert _login(LOGIN, "priya", PASSWORD, address="10.9.9.9").status_code == 429
    # Another address logs in as usual.
    assert _logged_in(_login(LOGIN, "priya", PASSWORD, address="10.0.0.3"))


def test_an_admin_sees_the_lock_and_lifts_it(priya, client):
    from axes.models import AccessAttempt

    for _ in range(3):
        _login(LOGIN, "priya", "wrong")
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"priya" in listing.content
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    lifted = client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert lifted.status_code == 302
    assert _logged_in(_login(LOGIN, "priya", PASSWORD))
