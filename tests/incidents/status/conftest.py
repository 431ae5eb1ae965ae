import pytest
from django.core.cache import cache

from incidents.status import cache as status_cache


@pytest.fixture(autouse=True)
def _fresh_status_cache():
    # The page's cached copy and the subscription counters live in the (process-wide) cache.
    cache.clear()
    status_cache.invalidate()
    yield
    cache.clear()
    status_cache.invalidate()
