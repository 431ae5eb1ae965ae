"""Calendar feed URLs people subscribed to before their tokens were hashed keep working after."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from drills.models import CalendarFeedToken
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("drills", "0002_seed_training")]
AFTER = [("drills", "0003_calendar_feed_token_hashed_at_rest")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _leaf_nodes() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _columns() -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, "drills_calendarfeedtoken")}


def test_a_plain_text_feed_token_is_hashed_in_place_and_its_url_still_opens_the_feed(client):
    subscriber, other = UserFactory(username="subscriber"), UserFactory(username="other")
    old_token, other_token = (
        "Zq3-plain-text-token-subscribed-in-2025_abcde",
        "another-old-token-of-43-characters-xxxxxx",
    )
    try:
        old_apps = _migrate(BEFORE)
        assert "token" in _columns()
        OldToken = old_apps.get_model("drills", "CalendarFeedToken")
        OldToken.objects.create(user_id=subscriber.pk, token=old_token)
        OldToken.objects.create(user_id=other.pk, token=other_token)

        _migrate(AFTER)

        assert "token" not in _columns()
        row = CalendarFeedToken.objects.get(user=subscriber)
        assert row.key_hash == hashlib.sha256(old_token.encode()).hexdigest() and row.prefix == old_token[:8]
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM drills_calendarfeedtoken")
            assert not [v for r in cursor.fetchall() for v in r if old_token in str(v) or other_token in str(v)]
        _migrate(_leaf_nodes())

        response = client.get(f"/drills/calendar/feed/{old_token}/mine.ics")
        assert response.status_code == 200 and response["Content-Type"] == "text/calendar; charset=utf-8"
        assert client.get(f"/drills/calendar/feed/{other_token}/mine.ics").status_code == 200
        assert client.get(f"/drills/calendar/feed/{old_token[:-1]}/mine.ics").status_code == 404
    finally:
        _migrate(_leaf_nodes())


def test_going_back_gives_each_person_a_new_secret(client):
    subscriber, other = UserFactory(username="subscriber"), UserFactory(username="other")
    try:
        _migrate(_leaf_nodes())
        for user in (subscriber, other):
            CalendarFeedToken.objects.create(user=user, prefix="abcdefgh", key_hash=f"{user.pk:064d}")

        old_apps = _migrate(BEFORE)

        tokens = list(old_apps.get_model("drills", "CalendarFeedToken").objects.values_list("token", flat=True))
        assert len(tokens) == 2 and len(set(tokens)) == 2 and all(len(t) == 43 for t in tokens)
    finally:
        _migrate(_leaf_nodes())
