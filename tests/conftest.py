import os

import pytest
from django.contrib.auth.models import Group

from incidents.roles import ensure_role_groups
from tests.asgi_server import asgi_server  # noqa: F401 - fixture
from tests.celery_fixtures import celery_worker, dispatcher, sms_provider  # noqa: F401 - fixtures
from tests.smtp import mailbox  # noqa: F401 - fixture

REQUIRE_SERVICES = os.environ.get("TMT_REQUIRE_SERVICES") == "1"


def _own_redis_database_per_xdist_worker() -> None:
    # pytest-xdist gives each worker its own test database; the broker needs the same, or one
    # worker's queue purge and test Celery workers would take another's messages. Worker gwN
    # uses the configured Redis database minus N (15, 14, ... under make test); the processes
    # the tests start inherit it through the environment.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    from django.conf import settings

    if not worker or not settings.CELERY_BROKER_URL.startswith("redis://"):
        return
    from urllib.parse import urlsplit, urlunsplit

    from tmt_ir.celery import app

    url = urlsplit(settings.CELERY_BROKER_URL)
    base = int(url.path.strip("/") or 0)
    own = urlunsplit(url._replace(path=f"/{(base - int(worker.removeprefix('gw'))) % 16}"))
    os.environ["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL = app.conf.broker_url = own


_own_redis_database_per_xdist_worker()


def pytest_collection_modifyitems(config, items):
    # Mutation testing judges each module by its own tests (mutation/run.py names them): a
    # mutant of the escalation rules is run against the escalation tests, not against every
    # test that happens to open an incident on the way.
    only = os.environ.get("TMT_MUTATION_TESTS")
    if not only:
        return
    prefixes = tuple(only.split(","))
    kept, deselected = [], []
    for item in items:
        (kept if item.nodeid.startswith(prefixes) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Under `make test` / CI every real part is there, so a skip means a missing service or
    # browser: report it as a failure rather than let a green run hide it.
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under TMT_REQUIRE_SERVICES=1, which counts as a failure: {report.longrepr}"


def pytest_sessionstart(session):
    if not REQUIRE_SERVICES:
        return
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"TMT_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL ({engine})", returncode=3)
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.exit("TMT_REQUIRE_SERVICES=1 but CELERY_BROKER_URL is not Redis", returncode=3)
    import redis

    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis at {settings.CELERY_BROKER_URL} is not reachable: {exc}", returncode=3)


if os.environ.get("TMT_TEST_DB_TEMPLATE"):
    # Mutation testing (make mutate) runs a few tests per mutant, in forked processes side by side.
    # Each gets its own database copied from a migrated template (a PostgreSQL file copy, well
    # under a second) instead of running the migrations again (about 10 s), and the copy is
    # dropped at the end, so a flush by one run's transactional tests never reaches another's.
    @pytest.fixture(scope="session")
    def django_db_setup(django_db_blocker, request):
        from django.db import connection

        template = os.environ["TMT_TEST_DB_TEMPLATE"]
        name = f"{template}_{os.getpid()}"
        with django_db_blocker.unblock():
            connection.close()
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            connection.settings_dict["NAME"] = name
            # What create_test_db keeps for tests with serialized_rollback=True (the seeded rows
            # they put back after their flush): half a second, so only when such a test runs.
            if any(
                marker.kwargs.get("serialized_rollback")
                for item in request.session.items
                for marker in item.iter_markers("django_db")
            ):
                connection._test_serialized_contents = connection.creation.serialize_db_to_string()
        yield
        with django_db_blocker.unblock():
            connection.close()
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def roles(db):
    ensure_role_groups()
    return {g.name: g for g in Group.objects.all()}


def _user_in(role_name, username):
    from tests.factories import UserFactory

    ensure_role_groups()
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=role_name))
    return user


@pytest.fixture
def engineer(db):
    return _user_in("On-Call Engineer", "oncall")


@pytest.fixture
def sysadmin(db):
    return _user_in("System Administrator", "sysadmin")


@pytest.fixture
def manager(db):
    return _user_in("Incident Manager", "im")


@pytest.fixture
def trainer(db):
    return _user_in("Trainer", "trainer")


@pytest.fixture
def engineer_client(client, engineer):
    client.force_login(engineer)
    return client


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def postgres(db):
    """For tests whose point is PostgreSQL's behaviour under concurrency."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: set DATABASE_URL (make test does)")
