"""The on-call journey on a 390-px phone, lists as cards, dark mode and the keyboard shortcuts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from incidents import services
from incidents.devtools.simulator import SimulatorServer, agent_ports_from_base
from incidents.models import Incident, State
from incidents.monitoring.models import EmergencyStop
from tests.browser import watch_csp_violations
from tests.factories import DEMO_PASSWORD, open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}
TITLE = "Risk engine rejecting every order"


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized page in a US-English browser: the locale that draws native date inputs as
    mm/dd/yyyy, so ISO fields are tested where they matter."""
    context = browser.new_context(viewport=PHONE, locale="en-US", timezone_id="UTC", is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    violations = watch_csp_violations(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert violations == [], violations
    assert errors == [], errors


@pytest.fixture
def circuit_breaker(settings) -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports=agent_ports_from_base(0), control_port=None)
    endpoints = server.start_in_thread()
    settings.TMT_CIRCUIT_BREAKER_URL = endpoints.agent_url("circuit_breaker")
    settings.TMT_CIRCUIT_BREAKER_TIMEOUT = 2.0
    yield server
    server.stop()


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("site-menu")).to_be_visible()


def assert_no_sideways_scroll(page: Page) -> None:
    page.wait_for_load_state("load")
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner}-px window"


def open_menu(page: Page) -> None:
    menu = page.get_by_test_id("site-menu")
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()


def test_the_whole_on_call_journey_works_on_a_phone(phone: Page, live_server, engineer, circuit_breaker):
    page = phone
    log_in(page, live_server.url, engineer.username)
    assert_no_sideways_scroll(page)

    # The menu is folded: the header is one short row until "Menu" is tapped.
    nav = page.get_by_role("navigation").first
    expect(nav.get_by_role("link", name="Incidents", exact=True)).to_be_hidden()
    assert page.locator("body > header").bounding_box()["height"] < 160
    open_menu(page)
    expect(nav.get_by_role("link", name="Incidents", exact=True)).to_be_visible()
    nav.get_by_role("button", name="Log incident").click()

    # Log: the start time is an ISO text field, not the browser's mm/dd/yyyy picker.
    expect(page.get_by_role("heading", name="Log incident")).to_be_visible()
    assert_no_sideways_scroll(page)
    start = page.get_by_label("Start time")
    expect(start).to_have_attribute("type", "text")
    expect(start).to_have_attribute("placeholder", "YYYY-MM-DD HH:MM")
    page.get_by_label("Title").fill(TITLE)
    page.get_by_role("radio", name=re.compile(r"^Sev2\s+High")).check()
    page.get_by_role("checkbox", name="Risk Management Agent").check()
    page.get_by_role("main").get_by_role("button", name="Log incident").click()
    reference = page.get_by_test_id("incident-reference").inner_text().strip()
    incident = Incident.objects.get(reference=reference)

    # The incident page: state, clocks and the next action come before everything else.
    now = page.get_by_test_id("incident-now")
    expect(now.locator(".badge.state")).to_have_text("Detected")
    expect(page.get_by_test_id("response-clock")).to_contain_text(re.compile(r"due in \d+m"))
    acknowledge = page.get_by_role("button", name="Acknowledge", exact=True)
    assert acknowledge.bounding_box()["y"] < PHONE["height"], "the next action is on the first screen"
    expect(page.get_by_test_id("fold-timeline")).not_to_have_attribute("open", "")
    assert_no_sideways_scroll(page)
    acknowledge.click()
    expect(now.locator(".badge.state")).to_have_text("Acknowledged")
    assert_no_sideways_scroll(page)

    # Checklist: the initial assessment, ticked in place.
    assessment = page.locator("#checklist h4", has_text="Initial assessment").locator("+ ul")
    items = assessment.get_by_test_id("checklist-item")
    for index in range(items.count()):
        item = items.nth(index)
        item.click()
        expect(item).to_have_attribute("aria-pressed", "true")

    # A note, from the folded timeline that "Add note" opens.
    page.get_by_role("button", name="Add a note").click()
    expect(page.get_by_test_id("fold-timeline")).to_have_attribute("open", "")
    note = "Risk engine config rolled back at 03:12"
    page.get_by_role("textbox", name="Note").fill(note)
    page.get_by_role("button", name="Add note").click()
    expect(page.get_by_test_id("timeline").get_by_role("row").filter(has_text=note)).to_be_visible()
    assert_no_sideways_scroll(page)

    # Contained straight from acknowledged: no separate "Start investigation" first.
    page.get_by_role("button", name="Mark contained").click()
    expect(now.locator(".badge.state")).to_have_text("Contained")

    # A status update.
    page.get_by_role("button", name="Post status update").click()
    expect(page.get_by_role("heading", name=f"Status update for {reference}")).to_be_visible()
    assert_no_sideways_scroll(page)
    page.get_by_label("Impact").fill("Orders rejected for 9 minutes")
    page.get_by_label("Details").fill("Config rolled back; orders flowing again")
    page.get_by_role("button", name="Post and send").click()
    expect(page.get_by_test_id("incident-reference")).to_have_text(reference)

    # The emergency stop, linked to the incident.
    page.get_by_test_id("emergency-stop-button").click()
    expect(page.get_by_role("heading", name="Trading emergency stop")).to_be_visible()
    assert_no_sideways_scroll(page)
    page.get_by_label("Reason").fill("Risk engine unsafe; halting as a precaution")
    page.get_by_label("I confirm: halt trading now").check()
    page.get_by_role("button", name="Stop trading now").click()
    expect(page.get_by_test_id("emergency-stop-outcome")).to_contain_text("Trading stopped")
    assert_no_sideways_scroll(page)
    page.get_by_test_id("emergency-stop-incident").click()

    # Resolve, with the resolution actions typed right at the Resolve button.
    resolve_form = page.get_by_test_id("resolve-form")
    resolve_form.get_by_role("button", name="Resolve").click()  # empty: the browser asks first
    expect(now.locator(".badge.state")).to_have_text("Contained")
    resolve_form.get_by_label("Resolution actions").fill("Rolled the risk config back; verified orders pass")
    resolve_form.get_by_role("button", name="Resolve").click()
    expect(now.locator(".badge.state")).to_have_text("Resolved")
    assert_no_sideways_scroll(page)

    incident.refresh_from_db()
    assert incident.state == State.RESOLVED
    assert incident.resolution_actions.startswith("Rolled the risk config back")
    assert incident.timeline.filter(kind="note", action=note).exists()
    assert incident.status_updates.count() == 1
    assert EmergencyStop.objects.filter(incident=incident).count() == 1
    states = list(incident.timeline.filter(kind="state_change").values_list("to_state", flat=True))
    assert states == ["detected", "acknowledged", "investigating", "contained", "resolved"]

    # Dates read as ISO 8601 with a 24-hour clock.
    page.get_by_test_id("fold-summary").locator("summary").click()
    expect(page.get_by_test_id("fold-summary")).to_contain_text(re.compile(r"Detected\s*\d{4}-\d{2}-\d{2} \d{2}:\d{2}"))


def _row_display(page: Page) -> str:
    row = page.get_by_test_id("incident-table").locator("tbody tr").first
    return row.evaluate("tr => getComputedStyle(tr).display")


def test_lists_are_cards_on_a_phone_and_tables_on_a_laptop(phone: Page, page: Page, live_server, engineer):
    for n in range(3):
        open_incident(reported_by=engineer, title=f"Order gateway latency spike number {n} with a long title")
    log_in(phone, live_server.url, engineer.username)
    for path in ("/", "/incidents/"):
        phone.goto(live_server.url + path)
        assert _row_display(phone) == "block"
        assert_no_sideways_scroll(phone)
        cards = phone.get_by_test_id("incident-table").locator("tbody tr")
        expect(cards).to_have_count(3)
        assert cards.first.bounding_box()["width"] <= PHONE["width"]

    log_in(page, live_server.url, engineer.username)
    for path in ("/", "/incidents/"):
        page.goto(live_server.url + path)
        assert _row_display(page) == "table-row"
        # A laptop has the whole menu, no "Menu" button.
        expect(page.get_by_role("navigation").get_by_role("link", name="Incidents", exact=True)).to_be_visible()
        expect(page.get_by_test_id("site-menu").locator("summary")).to_be_hidden()
    incident = Incident.objects.first()
    page.goto(live_server.url + incident.get_absolute_url())
    # On a laptop every section is shown, folded or not.
    expect(page.get_by_test_id("timeline")).to_be_visible()
    expect(page.get_by_test_id("fold-timeline").locator("summary")).to_be_hidden()


def _background(page: Page) -> tuple[int, int, int]:
    colour = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    return tuple(int(x) for x in re.findall(r"\d+", colour)[:3])


def _is_dark(page: Page) -> bool:
    # Pico eases the colour change: wait until the background settles on one side.
    page.wait_for_function(
        "() => { const c = getComputedStyle(document.documentElement).backgroundColor"
        ".match(/\\d+/g).slice(0, 3).map(Number); const s = c[0] + c[1] + c[2]; return s < 300 || s > 600; }"
    )
    return sum(_background(page)) < 3 * 100


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(page: Page, live_server, engineer):
    page.emulate_media(color_scheme="dark")
    log_in(page, live_server.url, engineer.username)
    assert _is_dark(page)
    assert page.evaluate("document.documentElement.getAttribute('data-theme')") is None

    toggle = page.get_by_role("button", name="Switch to light")
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert not _is_dark(page)
    page.reload()
    assert not _is_dark(page), "the choice is remembered"
    assert page.evaluate("localStorage.getItem('tmt-theme')") == "light"

    # Choosing what the system asks for again means following the system from then on.
    page.get_by_role("button", name="Switch to dark").click()
    assert _is_dark(page)
    assert page.evaluate("localStorage.getItem('tmt-theme')") is None
    page.emulate_media(color_scheme="light")
    page.reload()
    assert not _is_dark(page)


def test_keyboard_shortcuts(page: Page, live_server, engineer):
    incident = open_incident(reported_by=engineer, title=TITLE)
    log_in(page, live_server.url, engineer.username)
    page.goto(live_server.url + incident.get_absolute_url())

    page.keyboard.press("?")
    help_dialog = page.get_by_test_id("shortcuts-help")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Acknowledge the incident")
    page.keyboard.press("a")  # the open help keeps the keyboard: nothing is acknowledged
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    assert Incident.objects.get(pk=incident.pk).state == State.DETECTED

    # n: to the note field; typing there is typing, not shortcuts.
    page.keyboard.press("n")
    note = page.get_by_role("textbox", name="Note")
    expect(note).to_be_focused()
    page.keyboard.type("a note about s and a")
    expect(note).to_have_value("a note about s and a")
    assert Incident.objects.get(pk=incident.pk).state == State.DETECTED
    expect(page).to_have_url(re.compile(rf"/incidents/{incident.reference}/$"))

    # a: acknowledge (once the focus has left the field).
    page.locator("h1").click()
    page.keyboard.press("a")
    expect(page.locator(".badge.state").first).to_have_text("Acknowledged")
    assert Incident.objects.get(pk=incident.pk).acknowledged_by == engineer

    # s: the status update page.
    page.keyboard.press("s")
    expect(page.get_by_role("heading", name=f"Status update for {incident.reference}")).to_be_visible()

    # /: the quick search; an exact reference goes straight to the incident.
    page.keyboard.press("/")
    search = page.get_by_test_id("quick-search")
    expect(search).to_be_focused()
    search.fill(incident.reference.lower())
    search.press("Enter")
    expect(page.get_by_test_id("incident-reference")).to_have_text(incident.reference)
    # A word of the title goes to the list's search.
    page.keyboard.press("/")
    search.fill("rejecting")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"/incidents/\?q=rejecting$"))
    expect(page.get_by_test_id("incident-table")).to_contain_text(incident.reference)


def test_the_commander_is_not_offered_take_command_in_the_browser(page: Page, live_server, engineer):
    incident = open_incident(reported_by=engineer, commander=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    log_in(page, live_server.url, engineer.username)
    page.goto(live_server.url + incident.get_absolute_url())
    commander = page.get_by_test_id("role-incident_commander")
    expect(commander).to_contain_text(engineer.get_full_name() or engineer.username)
    expect(page.get_by_role("button", name="Take command")).to_have_count(0)


def test_every_page_in_the_menu_fits_a_phone(phone: Page, live_server, manager):
    incident = open_incident(reported_by=manager, level=1, title=TITLE, commander=manager)
    log_in(phone, live_server.url, manager.username)
    open_menu(phone)
    links = phone.get_by_test_id("site-menu").locator("a[href^='/']")
    paths = sorted({links.nth(i).get_attribute("href") for i in range(links.count())} - {"/admin/"})
    paths += [
        incident.get_absolute_url(),
        f"/incidents/{incident.reference}/edit/",
        f"/reports/{incident.reference}/",
        f"/incidents/{incident.reference}/status-update/",
    ]
    too_wide = []
    for path in paths:
        phone.goto(live_server.url + path)
        phone.wait_for_load_state("networkidle")
        width = phone.evaluate("document.scrollingElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide.append(f"{path}: {width} px")
    assert too_wide == [], too_wide
    assert len(paths) >= 10, paths
    # The measure itself: something wider than the phone does show.
    phone.evaluate(
        "() => { const d = document.createElement('div'); d.style.width = '1000px'; d.style.height = '1px';"
        " document.querySelector('main').append(d); }"
    )
    assert phone.evaluate("document.scrollingElement.scrollWidth") > PHONE["width"]
