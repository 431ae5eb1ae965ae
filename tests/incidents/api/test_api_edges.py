"""The API's edges: every error under /api/ is JSON, and no body, however large, deep or odd, is a 500.

Requests go through Django's test client with raise_request_exception=False, so an exception in
a view is answered the way production answers it (DEBUG is off under pytest-django).
"""

from __future__ import annotations

import json
import sys

import pytest
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory

from incidents.api.exceptions import bad_request, permission_denied
from incidents.api.parsers import nests_deeper_than
from incidents.api.services.api_tokens import api_token_create
from incidents.models import Incident, TimelineEntry
from tests.factories import certify

pytestmark = pytest.mark.django_db

INCIDENTS = "/api/v1/incidents/"
VALID = {"title": "Order gateway rejecting FIX logons", "severity": 2, "detection_method": "automated_alert"}


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()


@pytest.fixture
def api(manager) -> Client:
    """An incident manager's token client that answers exceptions as production does."""
    certify(manager)
    _, raw = api_token_create(user=manager, name="edges")
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {raw}")


def _json_error(answer, status: int) -> dict:
    assert answer.status_code == status, answer.content[:300]
    assert answer["Content-Type"].startswith("application/json"), answer["Content-Type"]
    return json.loads(answer.content)


def _counts() -> tuple[int, int]:
    return Incident.objects.count(), TimelineEntry.objects.count()


def _post(client: Client, body: str | bytes, url: str = INCIDENTS, **extra):
    return client.post(url, body, content_type="application/json", **extra)


# -- JSON for every error ---------------------------------------------------------------------


def test_an_unknown_url_and_an_unknown_object_are_json_404s(api):
    assert _json_error(api.get("/api/v1/nothing-here/"), 404) == {"detail": "Not found."}
    assert _json_error(Client().get("/api/v1/nothing-here/"), 404) == {"detail": "Not found."}
    assert "detail" in _json_error(api.get(INCIDENTS + "TMT-INC-1999-01-01-001/"), 404)


def test_a_method_not_offered_is_a_json_405(api):
    assert "PUT" in _json_error(api.put(INCIDENTS, "{}", content_type="application/json"), 405)["detail"]


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_errors_of_the_schema_and_its_docs_are_json_too(manager, url):
    # The schema is YAML and the docs HTML when they succeed; an error is JSON like any other.
    client = Client(raise_request_exception=False)
    client.force_login(manager)
    assert "PUT" in _json_error(client.put(url, "{}", content_type="application/json"), 405)["detail"]
    if url == "/api/schema/":
        assert "detail" in _json_error(Client().get(url), 401)


def test_an_unacceptable_accept_header_is_a_json_406(api):
    assert "Accept" in _json_error(api.get(INCIDENTS, HTTP_ACCEPT="text/html"), 406)["detail"]


def test_a_form_body_is_a_json_415_and_broken_json_a_json_400(api):
    before = _counts()
    form = api.post(INCIDENTS, "title=x", content_type="application/x-www-form-urlencoded")
    assert "Unsupported media type" in _json_error(form, 415)["detail"]
    assert "JSON parse error" in _json_error(_post(api, '{"title": "x",'), 400)["detail"]
    assert "JSON parse error" in _json_error(_post(api, b'{"title": "caf\xe9"}'), 400)["detail"]  # not UTF-8
    assert _counts() == before


def test_an_unexpected_exception_is_a_json_500_without_its_details(api, monkeypatch, caplog):
    from incidents.api import views

    def broken(*args, **kwargs):
        raise RuntimeError("connection string postgres://secret@db")

    monkeypatch.setattr(views.selectors, "incident_list_queryset", broken)
    answer = api.get(INCIDENTS)
    assert _json_error(answer, 500) == {"detail": "Server error."}
    assert b"secret" not in answer.content and b"Traceback" not in answer.content
    # Logged for the people who fix it, with the traceback.
    assert any(record.exc_info and "secret" in str(record.exc_info[1]) for record in caplog.records)


def test_a_page_still_gets_the_html_error_pages(engineer_client):
    answer = Client(raise_request_exception=False).get("/nothing-here/")
    assert answer.status_code == 404 and answer["Content-Type"].startswith("text/html")
    assert engineer_client.get("/incidents/TMT-INC-1999-01-01-001/")["Content-Type"].startswith("text/html")


def test_a_disallowed_host_under_the_api_is_a_json_400():
    answer = Client(raise_request_exception=False).get(INCIDENTS, HTTP_HOST="evil.example")
    assert _json_error(answer, 400) == {"detail": "Bad request."}


def test_djangos_own_refusals_under_the_api_are_json_and_pages_keep_theirs():
    # Django answers these before any view: a body over DATA_UPLOAD_MAX_MEMORY_SIZE read outside
    # the API's parser (RequestDataTooBig), and other suspicious requests.
    api_request, page_request = RequestFactory().post("/api/v1/incidents/"), RequestFactory().post("/incidents/")
    too_big = bad_request(api_request, RequestDataTooBig("over DATA_UPLOAD_MAX_MEMORY_SIZE"))
    assert too_big.status_code == 413 and json.loads(too_big.content) == {
        "detail": "The body is larger than the server reads."
    }
    assert bad_request(page_request, RequestDataTooBig())["Content-Type"].startswith("text/html")


def test_a_permission_denied_outside_drf_is_json_under_the_api_only():
    # No view under /api/ raises Django's PermissionDenied today (DRF answers its own 403s);
    # the handler makes sure one added later still answers JSON.
    answer = permission_denied(RequestFactory().get("/api/v1/somewhere/"))
    assert answer.status_code == 403 and answer["Content-Type"] == "application/json"
    assert permission_denied(RequestFactory().get("/incidents/"))["Content-Type"].startswith("text/html")


# -- size -------------------------------------------------------------------------------------


def _body_of(size: int) -> bytes:
    """A valid incident body of exactly `size` bytes (the padding in the description)."""
    empty = json.dumps({**VALID, "description": ""}).encode()
    return json.dumps({**VALID, "description": "x" * (size - len(empty))}).encode()


def test_a_body_just_over_the_limit_is_a_413_and_at_the_limit_is_read(api, settings):
    settings.TMT_API_MAX_BODY_BYTES = 2000
    before = _counts()
    answer = _json_error(_post(api, _body_of(2001)), 413)
    assert "2,000 bytes" in answer["detail"]
    assert _counts() == before
    assert _post(api, _body_of(2000)).status_code == 201


@pytest.mark.parametrize("megabytes", [3, 6])
def test_the_default_limit_refuses_a_body_of_a_few_megabytes_before_reading_it(api, megabytes):
    # 3 MB was read and parsed; 6 MB, over DATA_UPLOAD_MAX_MEMORY_SIZE, was Django's HTML 400.
    before = _counts()
    answer = _post(api, _body_of(megabytes * 1024 * 1024))
    assert "2,097,152 bytes" in _json_error(answer, 413)["detail"]
    assert _counts() == before


# -- depth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        ("[" * 32 + "]" * 32, False),  # at the limit: parsed (and refused as not an object)
        ("[" * 33 + "]" * 33, True),  # one past it
        ('{"a":' * 33 + "1" + "}" * 33, True),
        ("[" * 100_000 + "]" * 100_000, True),  # was a RecursionError and a 500
        ('{"a":' * 100_000 + "1" + "}" * 100_000, True),
        ("[" * 100_000, True),  # not even closed
    ],
)
def test_nesting_deeper_than_the_limit_is_a_400_that_says_so(api, body, too_deep):
    answer = _json_error(_post(api, body), 400)
    assert ("nests more than 32 levels" in json.dumps(answer)) is too_deep, answer


def test_brackets_inside_text_are_not_nesting(api):
    title = "[[[[{{{{" * 10 + '\\"[' * 10
    answer = _post(api, json.dumps({**VALID, "title": title, "description": "]" * 500}))
    assert answer.status_code == 201, answer.content
    assert Incident.objects.get().title == json.loads(json.dumps(title))


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        ("[]", 1, False),
        ("[[]]", 1, True),
        ("[[],[[]],{}]", 2, True),
        ("[[],[[]],{}]", 3, False),
        ('["[[[[", "]"]', 1, False),  # inside strings
        ('["\\"[[[["]', 1, False),  # an escaped quote does not end the string
        ("[" * 5 + "}" * 5, 3, True),  # malformed and deep: json.loads would recurse 5 levels
        ("[" * 3 + "}" + "]" * 3, 3, False),  # malformed, not deep: json.loads says what is wrong
        ("[[" * 40 + "]]" * 40, 79, True),
        ("[]" * 100_000, 1, False),
    ],
)
def test_the_depth_scan_counts_nesting_outside_strings(text, limit, deeper):
    assert nests_deeper_than(text, limit) is deeper


# -- numbers and text JSON can spell but nothing can store ------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1e999", "finite"),
        ("-1e999", "finite"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "Infinity"),
        ("9" * 100_000, "100,000 digits"),  # over Python's 4,300-digit limit for int()
    ],
)
def test_numbers_no_field_can_hold_are_a_400_naming_the_problem(api, value, words):
    before = _counts()
    answer = _json_error(_post(api, f'{{"title": "x", "severity": 3, "financial_impact_usd": {value}}}'), 400)
    assert words in answer["detail"] and "sys.set_int_max_str_digits" not in answer["detail"]
    assert _counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "\ud800": 1}, "\ud800"),  # an unknown field, named in the answer
        ({**VALID, "detection_method": "\ud800"}, "detection_method"),  # "... is not a valid choice"
        ({**VALID, "title": "Feed \ud800 stalled"}, "title"),
    ],
)
def test_a_lone_surrogate_is_a_field_error_even_when_the_answer_repeats_it(api, body, field):
    # A JSON body may spell a lone surrogate, which has no UTF-8 form: repeating it in an
    # error (and hashing the body for the Idempotency-Key) was a 500.
    before = _counts()
    raw = json.dumps(body)  # ensure_ascii: "\ud800" as an escape
    for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "surrogate-1"}):
        assert field in _json_error(_post(api, raw, **headers), 400)
    assert _counts() == before


def test_the_int_digit_limit_the_parser_relies_on_is_pythons_default():
    assert sys.get_int_max_str_digits() == 4300


@pytest.mark.parametrize("username", ["im\x00", "im\ud800"], ids=["nul", "lone-surrogate"])
def test_a_username_postgresql_cannot_hold_is_a_field_error(manager, username):
    from rest_framework.exceptions import ValidationError as DRFValidationError

    from incidents.api.serializers import UsernameField

    with pytest.raises(DRFValidationError):
        UsernameField().run_validation(username)
    assert UsernameField().run_validation(manager.username) == manager
