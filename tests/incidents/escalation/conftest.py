import pytest

from tests.factories import make_roster


@pytest.fixture
def team(db):
    """The seed's response team, reachable (make_roster)."""
    return make_roster()
