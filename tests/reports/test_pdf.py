"""The report as PDF: parsed back with pypdf, section by section."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from io import BytesIO

import pytest
from django.utils import timezone
from pypdf import PdfReader

from incidents import services
from incidents.escalation import services as escalation
from incidents.models import TimelineEntry
from reports import services as report_services
from reports.pdf import html_to_pdf
from tests.factories import make_roster, open_incident

from .helpers import SECTION_HEADINGS, pdf_text, resolve, resolved_incident

pytestmark = pytest.mark.django_db


def render(incident, *, kinds=(), review=None) -> bytes:
    html = report_services.report_html(
        incident_id=incident.pk, review=review, kinds=list(kinds), generated_at=timezone.now(), pdf=True
    )
    return html_to_pdf(html).content


def test_pdf_has_the_id_every_section_heading_and_a_timeline_row(engineer):
    incident = open_incident(reported_by=engineer, user_impact="Signals delayed for every strategy.")
    services.timeline_add_note(incident=incident, author=engineer, text="Restarted the consumer on host md-2")
    incident = resolve(incident, engineer)

    content = render(incident)
    reader = PdfReader(BytesIO(content))
    text = pdf_text(content)

    assert content.startswith(b"%PDF-")
    assert f"Incident Report: {incident.reference}" in text
    for heading in SECTION_HEADINGS:
        assert re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE), f"no section heading {heading!r}"
    # A timeline row: time, action, owner, as the seed's table has them.
    note = TimelineEntry.objects.get(incident=incident, kind="note")
    row_time = note.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    # The owner column is narrow: a long generated name wraps onto two lines.
    owner = r"\s+".join(map(re.escape, engineer.get_full_name().split()))
    assert re.search(rf"{row_time} Note · Restarted the consumer on host md-2\s+{owner}", text)
    # Summary fields of the template.
    for label in ("Incident ID", "Severity", "Start Time", "End Time", "Duration", "Impact"):
        assert label in text
    assert "Signals delayed for every strategy." in text
    # Header (incident ID and classification) and footer (page numbers) on every page.
    for number, page in enumerate(reader.pages, start=1):
        page_text = page.extract_text()
        assert incident.reference in page_text
        assert "Internal – Confidential" in page_text
        assert f"Page {number} of {len(reader.pages)}" in page_text


def test_the_pdf_embeds_the_fonts_shipped_with_the_project(engineer):
    reader = PdfReader(BytesIO(render(resolved_incident(engineer))))
    fonts = {
        str(font.get_object()["/BaseFont"]) for page in reader.pages for font in page["/Resources"]["/Font"].values()
    }
    assert fonts and all("TMT-Report-Sans" in name for name in fonts), fonts


def test_long_timelines_break_across_pages_with_the_header_row_repeated(engineer):
    incident = resolved_incident(engineer)
    for n in range(120):
        services.timeline_add_note(incident=incident, author=engineer, text=f"Check {n:03d}: order flow normal")
    reader = PdfReader(BytesIO(render(incident)))
    pages_with_rows = [p.extract_text() for p in reader.pages if "order flow normal" in p.extract_text()]
    assert len(pages_with_rows) >= 3
    for page_text in pages_with_rows:
        assert "Time Action Owner" in page_text
    # Every row is whole on one page: each note's text is on the page that has its time.
    joined = "\n".join(pages_with_rows)
    assert all(f"Check {n:03d}: order flow normal" in joined for n in range(120))


def test_the_timeline_filter_chooses_which_kinds_are_included(engineer):
    incident = open_incident(reported_by=engineer)
    services.timeline_add_note(incident=incident, author=engineer, text="Only notes please")
    incident = resolve(incident, engineer)

    notes_only = pdf_text(render(incident, kinds=[TimelineEntry.Kind.NOTE]))
    everything = pdf_text(render(incident))

    assert "Only notes please" in notes_only and "Only notes please" in everything
    assert "Acknowledge: Detected → Acknowledged" in everything
    assert "Acknowledge: Detected → Acknowledged" not in notes_only
    assert "1 entry from the append-only incident timeline (Note)" in notes_only


def test_user_text_is_escaped_in_the_html_and_shown_literally_in_the_pdf(engineer):
    typed = '<b>bold</b> <script>alert(1)</script> & "quotes"'
    incident = resolved_incident(engineer, title=typed, user_impact=typed)
    html = report_services.report_html(
        incident_id=incident.pk, review=None, kinds=[], generated_at=timezone.now(), pdf=True
    )
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert '<b>bold</b> <script>alert(1)</script> & "quotes"' in pdf_text(html_to_pdf(html).content)


def test_rto_breaches_and_the_response_sla_are_shown(engineer):
    # The market analysis agent's RTO is 30 minutes; this outage lasted two hours.
    started = timezone.now() - timedelta(hours=2)
    incident = resolved_incident(engineer, started_at=started, systems=("market_analysis", "dashboard"))
    html = report_services.report_html(
        incident_id=incident.pk, review=None, kinds=[], generated_at=timezone.now(), pdf=True
    )
    text = " ".join(pdf_text(html_to_pdf(html).content).split())

    assert re.search(r"Market Analysis Agent Critical system 30 min 2h 0\dm RTO BREACHED by 1h 3\dm", text)
    assert re.search(r"Dashboard Supporting system 1 h 2h 0\dm RTO BREACHED by 1h 0\dm", text)
    assert html.count('<tr class="breach">') == 2
    assert "Response-time SLA (15 min) MET" in text


def test_escalations_that_fired_and_regulatory_notifications_are_listed(engineer):
    make_roster()
    incident = open_incident(reported_by=engineer, category="security", level=1)
    escalation.deadlines_fire_due()  # the first page and the Sev1 → CTO escalation, due at open
    incident = resolve(incident, engineer)  # a resolved security incident needs a regulatory notice

    text = " ".join(pdf_text(render(incident)).split())

    assert "New Critical (Severity 1) incident: paging on-call On-Call Engineer" in text
    assert "Severity 1 incident: CTO at once: paging CTO" in text
    assert re.search(r"Resolved security incident \(within a business day\) .* pending", text)
