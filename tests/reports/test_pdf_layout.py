"""The report PDF as pages: read back as text boxes (pdfplumber) and as images (pdftoppm).

On every page the running header stays clear of the body, the pages of a long table repeat its
header row, and the sign-off box never sits on a page by itself.
"""

from __future__ import annotations

import html as html_lib
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pdfplumber
import pytest
from weasyprint import HTML

from incidents import services
from reports import services as report_services
from reports.pdf import REPORT_BASE_URL, StaticOnlyURLFetcher, html_to_pdf

from .helpers import resolved_incident, submitted_review

pytestmark = pytest.mark.django_db

GENERATED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SIGNOFF = "Not approved. Sign-off by a manager (Incident Manager, CTO, Head of Risk Management or CEO)"
DPI = 50
INK = 160  # a grey level darker than any background the report paints (table heads are #eceff1)


@dataclass(frozen=True)
class Box:
    text: str
    x0: float
    top: float
    x1: float
    bottom: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.top < other.bottom and other.top < self.bottom


@dataclass(frozen=True)
class Page:
    number: int
    header: list[Box]  # the running header's words
    margins: list[Box]  # header, footer and page number
    body: list[Box]  # everything else, in the order it was drawn

    def find(self, text: str) -> list[Box] | None:
        tokens = text.split()
        words = [b.text for b in self.body]
        for i in range(len(words) - len(tokens) + 1):
            if words[i : i + len(tokens)] == tokens:
                return self.body[i : i + len(tokens)]
        return None


def _running_text(html: str, css_class: str) -> list[str]:
    match = re.search(rf'<div class="{css_class}">(.*?)</div>', html, re.DOTALL)
    assert match, f"no .{css_class} in the report"
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split()


def _take_run(words: list[Box], tokens: list[str]) -> list[Box]:
    texts = [w.text for w in words]
    for i in range(len(texts) - len(tokens) + 1):
        if texts[i : i + len(tokens)] == tokens:
            run = words[i : i + len(tokens)]
            del words[i : i + len(tokens)]
            return run
    return []


def read_pages(content: bytes, html: str) -> list[Page]:
    """Each page's words, split into the running header, the other margin boxes and the body.

    The margin boxes are found by their text (from the report's HTML), in drawing order, so a
    body word that happens to sit in the margin is still body."""
    header_tokens = _running_text(html, "page-header")
    footer_tokens = _running_text(html, "page-footer")
    pages = []
    with pdfplumber.open(BytesIO(content)) as pdf:
        total = len(pdf.pages)
        for number, pdf_page in enumerate(pdf.pages, start=1):
            words = [
                Box(w["text"], w["x0"], w["top"], w["x1"], w["bottom"])
                for w in pdf_page.extract_words(use_text_flow=True)
            ]
            header = _take_run(words, header_tokens)
            footer = _take_run(words, footer_tokens)
            page_number = _take_run(words, ["Page", str(number), "of", str(total)])
            assert header and footer and page_number, f"page {number}: running header, footer or number missing"
            pages.append(Page(number=number, header=header, margins=header + footer + page_number, body=words))
    return pages


@dataclass(frozen=True)
class Gray:
    width: int
    height: int
    pixels: bytes = field(repr=False)

    def has_ink(self, rows: range, *, outside: list[range] = ()) -> bool:
        """Whether any pixel in `rows` is dark, leaving out the columns in `outside`."""
        edges = sorted((max(span.start, 0), min(span.stop, self.width)) for span in outside)
        segments, start = [], 0
        for skip_from, skip_to in edges:
            segments.append((start, skip_from))
            start = max(start, skip_to)
        segments.append((start, self.width))
        for y in rows:
            row = self.pixels[y * self.width : (y + 1) * self.width]
            if any(a < b and min(row[a:b]) < INK for a, b in segments):
                return True
        return False


def _read_pgm(path: Path) -> Gray:
    data = path.read_bytes()
    fields = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    assert fields and fields.group(3) == b"255", f"{path.name} is not an 8-bit PGM"
    width, height = int(fields.group(1)), int(fields.group(2))
    return Gray(width, height, data[fields.end() : fields.end() + width * height])


def page_images(content: bytes, tmp_path: Path) -> list[Gray]:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(content)
    # poppler-utils (make install); its absence fails the test rather than skipping the check.
    subprocess.run(["pdftoppm", "-gray", "-r", str(DPI), pdf, tmp_path / "page"], check=True, timeout=60)
    return [_read_pgm(path) for path in sorted(tmp_path.glob("page-*.pgm"))]


def _px(points: float) -> int:
    return int(points * DPI / 72)


def assert_page_layout(content: bytes, html: str, tmp_path: Path) -> list[Page]:
    pages = read_pages(content, html)
    images = page_images(content, tmp_path)
    assert len(images) == len(pages)
    for page, image in zip(pages, images, strict=True):
        overprinted = [(h.text, b.text) for h in page.header for b in page.body if h.overlaps(b)]
        assert not overprinted, f"page {page.number}: the running header overprints {overprinted[:5]}"
        assert page.body, f"page {page.number} is empty but for its header and footer"
        # The header's own rows of the image hold the header's ink and nothing else.
        rows = range(_px(min(b.top for b in page.header)), _px(max(b.bottom for b in page.header)) + 1)
        columns = [range(_px(b.x0) - 2, _px(b.x1) + 3) for b in page.header]
        assert not image.has_ink(rows, outside=columns), f"page {page.number}: something is drawn beside the header"
        assert image.has_ink(rows), f"page {page.number}: the header is not drawn"
        body_rows = range(_px(min(b.top for b in page.body)), _px(max(b.bottom for b in page.body)) + 1)
        assert image.has_ink(body_rows), f"page {page.number}: the body is blank"
    return pages


def assert_signoff_not_alone(pages: list[Page]) -> Page:
    holding = [page for page in pages if page.find(SIGNOFF)]
    assert len(holding) == 1, "the sign-off box is not on exactly one page"
    page = holding[0]
    signoff = page.find(SIGNOFF)
    above = [b for b in page.body if b.bottom <= signoff[0].top]
    assert above, f"the sign-off box sits alone at the top of page {page.number}"
    return page


def report(incident, review) -> tuple[str, bytes]:
    html = report_services.report_html(
        incident_id=incident.pk, review=review, kinds=[], generated_at=GENERATED_AT, pdf=True
    )
    return html, html_to_pdf(html).content


def test_a_long_report_keeps_its_header_clear_and_repeats_the_table_head(engineer, cto, tmp_path):
    incident = resolved_incident(engineer)
    for n in range(300):
        services.timeline_add_note(incident=incident, author=engineer, text=f"Check {n:03d}: order flow normal")
    review = submitted_review(incident, engineer)

    html, content = report(incident, review)
    pages = assert_page_layout(content, html, tmp_path)

    assert len(pages) >= 8
    timeline_pages = [page for page in pages if page.find("order flow normal")]
    assert len(timeline_pages) >= 6
    for page in timeline_pages:
        head = page.find("Time Action Owner")
        assert head, f"page {page.number}: the timeline's header row is not repeated"
        rows = [b for b in page.body if re.fullmatch(r"\d{4}-\d{2}-\d{2}", b.text)]
        assert rows and head[0].bottom <= min(b.top for b in rows), f"page {page.number}: header row not on top"
    assert_signoff_not_alone(pages)


def _reconstruction(lines: int) -> str:
    return "\n".join(f"14:{n % 60:02d} step {n} of the reconstruction" for n in range(lines))


def test_the_signoff_box_goes_over_a_page_with_what_it_signs(engineer, cto, tmp_path):
    """At the edge: the review's reconstruction just long enough that the sign-off box no longer
    fits on the page it would end, found by lengthening the text a line at a time (by halves)."""
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)

    def pages_with(lines: int) -> int:
        review.timeline_reconstruction = _reconstruction(lines)
        html = report_services.report_html(
            incident_id=incident.pk, review=review, kinds=[], generated_at=GENERATED_AT, pdf=True
        )
        return len(HTML(string=html, base_url=REPORT_BASE_URL, url_fetcher=StaticOnlyURLFetcher()).render().pages)

    # A page holds fewer than 64 lines of text.
    fits, spills = 0, 64
    base = pages_with(fits)
    assert pages_with(spills) > base
    while spills - fits > 1:
        middle = (fits + spills) // 2
        fits, spills = (middle, spills) if pages_with(middle) == base else (fits, middle)

    review.timeline_reconstruction = _reconstruction(spills)
    html, content = report(incident, review)
    pages = assert_page_layout(content, html, tmp_path)

    assert len(pages) == base + 1
    page = assert_signoff_not_alone(pages)
    assert page.number == len(pages)
    assert page.find(f"step {spills - 1} of the reconstruction"), "the review's last line is not with its sign-off"
