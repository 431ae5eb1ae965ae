from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from drills import services
from drills.models import DrillKind
from tests.factories import UserFactory, certify, make_roster


@pytest.fixture
def team(db):
    return make_roster()


@pytest.fixture
def trainer_user(team):
    user = UserFactory(username="coach", first_name="Casey", last_name="Coach")
    user.groups.add(Group.objects.get(name="Trainer"))
    return user


@pytest.fixture
def trainer_client(client, trainer_user):
    client.force_login(trainer_user)
    return client


@pytest.fixture
def newbie(team):
    """A new on-call engineer: certified, but mentoring not done yet."""
    user = UserFactory(username="newbie", first_name="Nia", last_name="Newman")
    user.groups.add(Group.objects.get(name="On-Call Engineer"))
    certify(user, mentoring_done=False)
    return user


def kind(key: str) -> DrillKind:
    return DrillKind.objects.get(key=key)


def schedule(trainer, *, key: str = "disaster-recovery", days: float = 7, participants=(), **kwargs):
    return services.drill_schedule(
        kind=kind(key),
        scheduled_start=kwargs.pop("scheduled_start", timezone.now() + timedelta(days=days)),
        facilitator=kwargs.pop("facilitator", trainer),
        created_by=trainer,
        participants=list(participants),
        **kwargs,
    )
