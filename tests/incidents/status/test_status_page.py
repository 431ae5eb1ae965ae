"""The public status page, its JSON, feed and banner: only what someone published, no internal
details, a 90-day history, maintenance with its own lifecycle, uptime from the health checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from incidents.models import System
from incidents.monitoring.models import HealthSample, HealthTarget
from incidents.notifications.models import Notification
from incidents.status import services
from incidents.status.models import Maintenance, PublicIncident, StatusComponent, Subscriber, UptimeDay
from incidents.status.selectors import public_draft
from tests.factories import UserFactory, open_incident

INTERNAL_TITLE = "Sev1: CB agent OOM-killed on host trd-prod-07 after bad deploy 4f2a"
INTERNAL_DESCRIPTION = "kubectl logs show heap at 98%; Bob's config change"
PUBLIC_TITLE = "Order entry unavailable"


@pytest.fixture
def outage(db, engineer):
    return open_incident(
        reported_by=engineer,
        level=1,
        title=INTERNAL_TITLE,
        description=INTERNAL_DESCRIPTION,
        systems=("circuit_breaker",),
        financial_impact_usd=Decimal("25000"),
        commander=engineer,
    )


def publish(incident, user, **kwargs):
    fields = {
        "title": PUBLIC_TITLE,
        "impact": "major_outage",
        "status": "investigating",
        "message": "We are investigating failed order submissions.",
    }
    return services.public_incident_publish(incident=incident, user=user, **(fields | kwargs))


def page(client) -> str:
    response = client.get("/status/")
    assert response.status_code == 200
    return response.content.decode()


def as_json(client) -> dict:
    response = client.get("/status.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def active_subscriber(email: str, systems=()) -> Subscriber:
    subscriber = Subscriber.objects.create(
        kind=Subscriber.Kind.EMAIL, email=email, created_at=timezone.now(), confirmed_at=timezone.now()
    )
    subscriber.systems.set(systems)
    return subscriber


def test_unpublished_incident_is_absent_from_page_and_json(client, outage):
    html = page(client)
    assert INTERNAL_TITLE not in html and "Service disruption" not in html
    assert 'data-testid="public-incident"' not in html
    data = as_json(client)
    assert data["incidents"] == [] and data["history"] == []
    assert INTERNAL_TITLE not in json.dumps(data)


def test_publishing_shows_it_without_internal_details(client, outage, engineer):
    page(client)  # cached before the publish: the publish must replace the copy
    publish(outage, engineer)
    html = page(client)
    assert PUBLIC_TITLE in html and "We are investigating failed order submissions." in html
    data = as_json(client)
    [shown] = data["incidents"]
    assert shown["title"] == PUBLIC_TITLE and shown["status"] == "investigating"
    assert shown["components"] == ["circuit_breaker"]
    assert data["status"] == "major_outage"
    circuit = next(c for g in data["groups"] for c in g["components"] if c["key"] == "circuit_breaker")
    assert circuit["status"] == "major_outage"
    for secret in [INTERNAL_TITLE, INTERNAL_DESCRIPTION, outage.reference, "25000", "Severity", "Sev1", "(Critical)"]:
        assert secret not in html, secret
        assert secret not in json.dumps(data), secret
    assert "csrfmiddlewaretoken" not in html


def test_public_updates_are_published_one_by_one_and_resolving_keeps_the_history(client, outage, engineer):
    public = publish(outage, engineer)
    services.public_incident_update(public_incident=public, user=engineer, status="identified", message="Cause found.")
    [shown] = as_json(client)["incidents"]
    assert [u["status"] for u in shown["updates"]] == ["identified", "investigating"]
    services.public_incident_update(public_incident=public, user=engineer, status="resolved", message="All fixed.")
    data = as_json(client)
    assert data["incidents"] == []
    [past] = data["history"]
    assert past["title"] == PUBLIC_TITLE and [u["status"] for u in past["updates"]][0] == "resolved"
    assert data["status"] == "operational"
    html = page(client)
    assert 'data-testid="history-incident"' in html and "All fixed." in html


def test_a_resolved_incident_takes_no_more_updates(outage, engineer):
    public = publish(outage, engineer)
    services.public_incident_update(public_incident=public, user=engineer, status="resolved", message="Fixed.")
    with pytest.raises(services.ValidationError, match="resolved"):
        services.public_incident_update(public_incident=public, user=engineer, status="monitoring", message="Again")


@pytest.mark.parametrize(("days_ago", "kept"), [(89, True), (90, True), (91, False)])
def test_history_keeps_a_resolved_incident_90_days(client, outage, engineer, days_ago, kept):
    resolved = timezone.now() - timedelta(days=days_ago, seconds=-5 if days_ago == 90 else 0)
    public = publish(outage, engineer, now=resolved - timedelta(hours=1))
    services.public_incident_update(
        public_incident=public, user=engineer, status="resolved", message="Fixed.", now=resolved
    )
    assert bool(as_json(client)["history"]) is kept
    assert (PUBLIC_TITLE in page(client)) is kept


def test_only_communications_roles_publish(client, outage, sysadmin, engineer):
    client.force_login(sysadmin)
    url = f"/status/manage/incidents/{outage.reference}/publish/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"title": "x", "impact": "major_outage", "status": "investigating"}).status_code == 403
    client.force_login(engineer)
    draft = client.get(url)
    assert draft.status_code == 200
    form = draft.context["form"]
    assert form.initial["status"] == "investigating" and form.initial["impact"] == "major_outage"
    assert INTERNAL_TITLE not in form.initial["title"] and INTERNAL_TITLE not in form.initial["message"]
    response = client.post(
        url,
        {"title": PUBLIC_TITLE, "impact": "major_outage", "status": "investigating", "message": "Looking into it."},
    )
    assert response.status_code == 302
    client.logout()
    assert PUBLIC_TITLE in page(client)


def test_publishing_with_blank_fields_is_refused_and_writes_nothing(client, outage, engineer):
    client.force_login(engineer)
    response = client.post(
        f"/status/manage/incidents/{outage.reference}/publish/",
        {"title": " ", "impact": "apocalypse", "status": "resolved", "message": ""},
    )
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"title", "impact", "status", "message"}
    assert not PublicIncident.objects.exists() and not Notification.objects.filter(incident=None).exists()


def test_publish_update_and_resolve_notify_subscribers_of_the_components(outage, engineer):
    follows = active_subscriber("trader@client.example", [System.objects.get(key="circuit_breaker")])
    other = active_subscriber("quant@client.example", [System.objects.get(key="risk_management")])
    everything = active_subscriber("ops@client.example")
    Subscriber.objects.create(kind=Subscriber.Kind.EMAIL, email="pending@client.example", created_at=timezone.now())
    public = publish(outage, engineer)
    services.public_incident_update(public_incident=public, user=engineer, status="resolved", message="Fixed.")
    sent = Notification.objects.filter(channel="email").order_by("pk")
    assert sorted(n.address for n in sent) == sorted([follows.email, everything.email] * 2)
    assert other.email not in {n.address for n in sent}
    first = sent.first()
    assert first.subject == f"[TMT status] {PUBLIC_TITLE}: Investigating"
    assert f"/status/unsubscribe/{first.status_notice.subscriber.unsubscribe_token}/" in first.body
    assert INTERNAL_TITLE not in first.body and first.incident_id is None


def test_maintenance_lifecycle_with_notices(client, manager):
    subscriber = active_subscriber("ops@client.example")
    now = timezone.now()
    services.maintenance_schedule(
        user=manager,
        title="Database upgrade",
        message="Orders are paused for 30 minutes.",
        starts_at=now + timedelta(hours=2),
        ends_at=now + timedelta(hours=3),
        systems=[System.objects.get(key="market_analysis")],
    )
    [shown] = as_json(client)["maintenance"]
    assert shown["state"] == "scheduled" and shown["title"] == "Database upgrade"
    assert as_json(client)["status"] == "operational"
    # Before its start the clock leaves it alone; at its start it begins, at its end it completes.
    assert services.maintenance_advance_due(now=now + timedelta(hours=1)) == "started 0, completed 0"
    assert services.maintenance_advance_due(now=now + timedelta(hours=2)) == "started 1, completed 0"
    data = as_json(client)
    assert data["maintenance"][0]["state"] == "in_progress" and data["status"] == "under_maintenance"
    market = next(c for g in data["groups"] for c in g["components"] if c["key"] == "market_analysis")
    assert market["status"] == "under_maintenance"
    assert services.maintenance_advance_due(now=now + timedelta(hours=3)) == "started 0, completed 1"
    data = as_json(client)
    assert data["maintenance"] == [] and data["maintenance_history"][0]["state"] == "completed"
    subjects = list(Notification.objects.filter(address=subscriber.email).values_list("subject", flat=True))
    assert subjects == [
        "[TMT status] Maintenance scheduled: Database upgrade",
        "[TMT status] Maintenance in progress: Database upgrade",
        "[TMT status] Maintenance completed: Database upgrade",
    ]
    with pytest.raises(services.ValidationError, match="completed"):
        services.maintenance_advance(maintenance=Maintenance.objects.get(), user=manager, step="start")


def test_maintenance_in_the_past_or_backwards_is_refused(manager):
    now = timezone.now()
    with pytest.raises(services.ValidationError) as refused:
        services.maintenance_schedule(
            user=manager, title="x", message="y", starts_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1)
        )
    assert "ends_at" in refused.value.message_dict
    assert not Maintenance.objects.exists() and not Notification.objects.exists()


def test_uptime_bars_cover_90_days_from_rollup_and_recent_samples(client, db):
    system = System.objects.get(key="circuit_breaker")
    target = HealthTarget.objects.create(name="cb", url="http://127.0.0.1:8001/health", system=system)
    now = timezone.now()
    today = now.astimezone(UTC).date()
    # Old samples, rolled up and then pruned; the 90th day back is the first bar, the 91st is off.
    UptimeDay.objects.create(system=system, day=today - timedelta(days=89), ok=50, total=100)
    UptimeDay.objects.create(system=system, day=today - timedelta(days=90), ok=0, total=100)
    start = datetime(today.year, today.month, today.day, tzinfo=UTC)
    HealthSample.objects.bulk_create(
        [HealthSample(target=target, checked_at=start + timedelta(seconds=n), ok=n % 4 != 0) for n in range(8)]
    )
    circuit = next(c for g in as_json(client)["groups"] for c in g["components"] if c["key"] == "circuit_breaker")
    bars = circuit["uptime_days"]
    assert len(bars) == 90
    first_day = today - timedelta(days=89)
    assert bars[0] == {"date": str(first_day), "percent": 50.0, "level": "major", "label": f"{first_day}: 50.0%"}
    assert bars[-1]["percent"] == 75.0
    assert {b["level"] for b in bars[1:-1]} == {"none"}
    assert circuit["uptime_percent"] == round(100 * (50 + 6) / 108, 3)


def test_uptime_rollup_counts_finished_days_once(db):
    system = System.objects.get(key="risk_management")
    target = HealthTarget.objects.create(name="rm", url="http://127.0.0.1:8003/health", system=system)
    now = timezone.now()
    yesterday = (now - timedelta(days=1)).astimezone(UTC).date()
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)
    HealthSample.objects.bulk_create(
        [HealthSample(target=target, checked_at=noon + timedelta(minutes=n), ok=n != 0) for n in range(10)]
        + [HealthSample(target=target, checked_at=now, ok=False)]  # today: not finished, not rolled up
    )
    services.uptime_roll_up(now=now)
    services.uptime_roll_up(now=now)
    assert list(UptimeDay.objects.values_list("day", "ok", "total")) == [(yesterday, 9, 10)]


def test_a_component_shows_its_public_name_group_and_state_set_by_hand(client, db):
    StatusComponent.objects.create(
        system=System.objects.get(key="risk_management"),
        public_name="Risk checks",
        group="Trading",
        manual_state="partial_outage",
    )
    data = as_json(client)
    trading = next(g for g in data["groups"] if g["name"] == "Trading")
    assert trading["components"][0]["name"] == "Risk checks"
    assert trading["components"][0]["status"] == "partial_outage"
    assert data["status"] == "partial_outage"


def test_page_json_and_banner_are_cached_with_cors_for_configured_origins(client, settings, db):
    settings.CORS_ALLOWED_ORIGINS = ["https://platform.tmt.example"]
    for path in ["/status/", "/status.json", "/status/embed.js"]:
        allowed = client.get(path, headers={"Origin": "https://platform.tmt.example"})
        assert allowed.status_code == 200
        assert set(allowed["Cache-Control"].split(", ")) == {"public", f"max-age={settings.TMT_STATUS_CACHE_SECONDS}"}
        if path != "/status/":
            assert allowed["Access-Control-Allow-Origin"] == "https://platform.tmt.example"
        other = client.get(path, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other
    assert 'fetch(origin + "/status.json"' in client.get("/status/embed.js").content.decode()


def test_the_atom_feed_lists_public_updates_only(client, outage, engineer):
    public = publish(outage, engineer)
    services.public_incident_update(public_incident=public, user=engineer, status="monitoring", message="Fix live.")
    response = client.get("/status/feed.atom")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/atom+xml")
    feed = response.content.decode()
    assert f"{PUBLIC_TITLE}: Monitoring" in feed and f"{PUBLIC_TITLE}: Investigating" in feed
    assert INTERNAL_TITLE not in feed and outage.reference not in feed


def test_public_pages_need_no_login_and_managing_does(client, db):
    for path in ["/status/", "/status.json", "/status/embed.js", "/status/feed.atom", "/status/subscribe/"]:
        assert client.get(path).status_code == 200, path
    assert client.get("/status/manage/").status_code == 302
    client.force_login(UserFactory())
    assert client.get("/status/manage/").status_code == 403


def test_a_repeat_read_is_served_from_the_copy_with_every_security_header(client, outage, engineer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = client.get("/status.json")
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/status.json")
    assert len(queries) == 0 and again.content == first.content
    for header in ["Content-Security-Policy", "Permissions-Policy", "X-Frame-Options", "Cache-Control", "Content-Type"]:
        assert again[header] == first[header], header
    publish(outage, engineer)
    assert as_json(client)["incidents"][0]["title"] == PUBLIC_TITLE


def test_who_publishes_and_who_announces_maintenance(client, roles):
    from django.contrib.auth.models import Group

    from incidents import roles as r

    publishers = {r.ON_CALL_ENGINEER, r.INCIDENT_MANAGER, r.CTO, r.HEAD_OF_RISK, r.CEO}
    announcers = {r.SYSTEM_ADMINISTRATOR, r.INCIDENT_MANAGER, r.CTO}
    for role in r.ROLE_PERMISSIONS:
        user = UserFactory(username=f"status-{role}")
        user.groups.add(Group.objects.get(name=role))
        assert user.has_perm("status.publish_status") is (role in publishers), role
        assert user.has_perm("status.announce_maintenance") is (role in announcers), role
        client.force_login(user)
        answer = client.post("/status/manage/maintenance/", {"title": "", "message": ""})
        assert answer.status_code == (400 if role in announcers else 403), role
        assert client.get("/status/manage/").status_code == (200 if role in publishers | announcers else 403), role


def test_a_hidden_component_is_never_named_and_a_public_name_replaces_the_internal_one(client, outage, engineer):
    breaker = System.objects.get(key="circuit_breaker")
    StatusComponent.objects.create(system=breaker, visible=False)
    market = System.objects.get(key="market_analysis")
    StatusComponent.objects.create(system=market, public_name="Market data")
    outage.affected_systems.add(market)
    subscriber = active_subscriber("watcher@clients.example")
    publish(outage, engineer)
    data = as_json(client)
    (incident,) = data["incidents"]
    assert incident["components"] == ["market_analysis"] and incident["component_names"] == ["Market data"]
    assert breaker.name not in json.dumps(data) and breaker.name not in page(client)
    mail = Notification.objects.get(status_notice__subscriber=subscriber)
    assert breaker.name not in mail.body and "Market data" in mail.body
    draft = public_draft(incident=outage)
    assert breaker.name not in draft["title"] and "Market data" in draft["title"]


@pytest.mark.parametrize(
    "path", ["/status/subscribe/confirm/%00/", "/status/unsubscribe/%00/", "/status/unsubscribe/x%C2%B2/"]
)
def test_a_link_token_postgresql_cannot_query_is_an_unknown_link_not_a_500(client, db, path):
    assert client.get(path).status_code < 500
    assert client.post(path).status_code < 500
