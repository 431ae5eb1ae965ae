"""The relay's reader: every committed event once, also one that commits after a later one."""

from __future__ import annotations

import pytest

from incidents.live import relay
from incidents.live.models import LiveEvent

pytestmark = pytest.mark.django_db


def _event(pk: int) -> LiveEvent:
    return LiveEvent.objects.create(id=pk, topic=LiveEvent.Topic.INCIDENT, incident_id=pk)


def test_the_reader_starts_after_what_is_already_there_and_reads_each_event_once():
    _event(100)
    reader = relay._Reader()
    assert reader.read() == []  # pages just loaded show what is there
    _event(101)
    _event(102)
    assert [e.id for e in reader.read()] == [101, 102]
    assert reader.read() == []


def test_an_event_committed_after_a_later_one_is_still_read():
    _event(100)
    reader = relay._Reader()
    reader.read()
    # 102's transaction committed first; 101 was numbered before it but commits later.
    _event(102)
    assert [e.id for e in reader.read()] == [102]
    _event(101)
    assert [e.id for e in reader.read()] == [101]
    assert reader.read() == []


def test_a_number_never_committed_is_given_up_after_a_while(monkeypatch):
    _event(100)
    reader = relay._Reader()
    reader.read()
    _event(103)
    assert [e.id for e in reader.read()] == [103]
    assert set(reader.gaps) == {101, 102}
    monkeypatch.setattr(relay, "GAP_WAIT_S", 0.0)
    assert reader.read() == []
    assert reader.gaps == {}
    # An announcement is one autocommitted INSERT: a number still missing after seconds belonged
    # to one that failed, and is not waited for again.
    _event(101)
    assert reader.read() == []


def test_the_event_says_which_incident_and_when_nothing_more():
    event = relay.Event(7, "incident", 42, 1_700_000_000.5)
    assert event.as_sse() == 'id: 7\nevent: incident\ndata: {"incident": 42, "at": 1700000000.500}\n\n'
    assert relay.Event(8, "health", None, 1.0).as_sse().endswith('data: {"incident": null, "at": 1.000}\n\n')
