"""No request leaves the machine because of what someone typed into a report.

A real socket listens on a local port; URLs pointing at it are typed into every kind of field
that reaches the report and also planted as real markup behind the escaping. After rendering,
the socket must have received no connection. A control render with WeasyPrint's default fetcher
shows the same socket does notice a request.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from incidents import services
from reports import services as report_services
from reports.models import ActionItem, ReportRender
from reports.pdf import REPORT_BASE_URL, StaticOnlyURLFetcher, html_to_pdf, static_file_for
from tests.factories import severity

from .helpers import pdf_text, resolve, written_review

pytestmark = pytest.mark.django_db


class Listener:
    """A listening TCP socket that never answers; counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def connections(self) -> int:
        # The kernel completes the handshake into the backlog even though we never answer, so
        # every connection attempt is waiting here to be accepted.
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_the_fetcher_maps_static_urls_to_files_and_refuses_everything_else():
    css = static_file_for(REPORT_BASE_URL + "static/css/report.css")
    assert css is not None and css.name == "report.css" and css.is_file()
    assert static_file_for(REPORT_BASE_URL + "static/fonts/DejaVuSans.ttf").name == "DejaVuSans.ttf"
    static_dir = Path(settings.STATICFILES_DIRS[0])
    assert (
        static_file_for((static_dir / "css" / "report.css").as_uri()) == (static_dir / "css" / "report.css").resolve()
    )
    for url in [
        "http://127.0.0.1:8000/static/css/report.css",  # the right path on another host
        "https://example.com/x.png",
        REPORT_BASE_URL + "media/evidence/secret.log",  # not static
        REPORT_BASE_URL + "static/../tmt_ir/settings.py",
        REPORT_BASE_URL + "static/%2e%2e/tmt_ir/settings.py",
        REPORT_BASE_URL + "static/",
        "file:///etc/passwd",
        (static_dir / ".." / "tmt_ir" / "settings.py").as_uri(),
        "file://remote-host/share/x.css",
        "ftp://127.0.0.1/x",
        "data:text/css,body{}",
        "gopher://127.0.0.1:70/",
    ]:
        assert static_file_for(url) is None, url
    fetcher = StaticOnlyURLFetcher()
    with pytest.raises(ValueError, match="only reads the project's static files"):
        fetcher("http://169.254.169.254/latest/meta-data/")
    assert fetcher.refused == ["http://169.254.169.254/latest/meta-data/"]


def test_in_production_the_hashed_copies_collectstatic_wrote_are_served(settings, tmp_path):
    """Under the manifest storage the report links css/report.<hash>.css, a name only STATIC_ROOT
    holds; without it the PDF came out unstyled. Nothing outside STATIC_ROOT is served that way."""
    settings.STATIC_ROOT = tmp_path / "collected"
    hashed = settings.STATIC_ROOT / "css" / "report.3f2a9c1e0b7d.css"
    hashed.parent.mkdir(parents=True)
    hashed.write_text("body { font-size: 9pt; }")
    (tmp_path / "outside.css").write_text("secret")
    (settings.STATIC_ROOT / "css" / "link.css").symlink_to(tmp_path / "outside.css")
    assert static_file_for(REPORT_BASE_URL + "static/css/report.3f2a9c1e0b7d.css") == hashed.resolve()
    for name in ["css/report.0000.css", "../outside.css", "css/link.css", "css"]:
        assert static_file_for(REPORT_BASE_URL + "static/" + name) is None, name


def test_an_img_typed_into_any_field_causes_no_request(listener, engineer):
    img = f'<img src="{listener.url}">'
    css = f'<link rel="stylesheet" href="{listener.url}x.css"><style>@import url("{listener.url}i.css");</style>'
    typed = f"{img} {css} {listener.url}"
    incident = services.incident_open(
        title=f"Feed down {img}",
        severity=severity(2),
        reported_by=engineer,
        detection_method="user_report",
        user_impact=typed,
        description=typed,
    )
    services.timeline_add_note(incident=incident, author=engineer, text=typed, owner_team=img)
    incident = services.incident_update(incident=incident, user=engineer, primary_cause=typed)
    incident = resolve(incident, engineer, resolution=typed)
    report_services.action_item_create(
        incident=incident,
        user=engineer,
        title=f"Fix {img}"[:200],
        kind=ActionItem.Kind.IMMEDIATE,
        owner=engineer,
        due_date=timezone.localdate() + timedelta(days=3),
        description=typed,
    )
    written_review(incident, engineer, root_cause_analysis=typed, timeline_reconstruction=typed)

    # The real path: the render task's service, with the stored PDF it produces.
    render = report_services.report_render_request(incident=incident, kinds=[], user=engineer)
    assert report_services.report_render_run(render_id=render.pk).startswith("rendered")
    render = ReportRender.objects.get(pk=render.pk)
    text = pdf_text(render.pdf.read())

    assert img in text  # shown as text, not fetched
    assert listener.connections() == 0


def test_real_markup_behind_the_escaping_still_fetches_nothing(listener):
    # Even if markup got through (a template bug, a future |safe), the fetcher refuses the URL.
    html = f"""<!doctype html><html><head>
      <link rel="stylesheet" href="/static/css/report.css">
      <link rel="stylesheet" href="{listener.url}evil.css">
      <style>@import url("{listener.url}import.css");
             body {{ background: url("{listener.url}bg.png"); }}
             @font-face {{ font-family: X; src: url("{listener.url}font.ttf"); }}</style>
      </head><body class="report"><p style="font-family: X">x</p>
      <img src="{listener.url}img.png"><object data="{listener.url}obj"></object>
      <svg><image href="{listener.url}svg.png" width="10" height="10"/></svg>
      <iframe src="{listener.url}frame"></iframe></body></html>"""
    result = html_to_pdf(html)
    assert result.content.startswith(b"%PDF-")
    assert listener.connections() == 0
    refused = " ".join(result.refused)
    for name in ("evil.css", "import.css", "bg.png", "font.ttf", "img.png"):
        assert f"{listener.url}{name}" in refused


def test_control_the_default_fetcher_would_have_connected(listener):
    # Proves the listener notices a request: WeasyPrint's own fetcher does connect.
    HTML(string=f'<img src="{listener.url}img.png">', url_fetcher=URLFetcher(timeout=0.5)).write_pdf()
    assert listener.connections() >= 1
