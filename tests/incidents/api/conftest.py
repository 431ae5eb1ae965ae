"""Shared by the API contract fuzz runs (test_contract_fuzz.py, test_alerts.py)."""

from __future__ import annotations

import json
import os

import pytest
from django.core import signals
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

# Examples per operation: `make test` runs a bounded number, `make fuzz` many more.
FUZZ_EXAMPLES = int(os.environ.get("TMT_FUZZ_EXAMPLES", "5"))


def served_schema() -> dict:
    """The schema exactly as /api/schema/?format=json serves it (built without a request or DB)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


@pytest.fixture
def wsgi_calls_keep_the_test_connection():
    # The WSGI handler closes "old" connections at each request's start and end, and inside the
    # test's transaction that would close the test's own connection; Django's test client
    # disconnects the same handler for the same reason.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
