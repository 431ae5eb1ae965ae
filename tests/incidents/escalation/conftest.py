import pytest

from incidents import wakeups
from tests.factories import make_roster


@pytest.fixture
def team(db):
    """The seed's response team, reachable (make_roster)."""
    return make_roster()


@pytest.fixture
def woken(monkeypatch):
    """The channels woken (wakeups.wake), the wake-ups still sent."""
    calls = []
    real = wakeups.wake
    monkeypatch.setattr(wakeups, "wake", lambda channel, **kw: (calls.append(channel), real(channel, **kw)))
    return calls
