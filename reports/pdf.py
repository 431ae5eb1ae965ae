"""HTML → PDF with WeasyPrint, fetching nothing but the project's own static files.

The report is user text in a template; escaping keeps that text from becoming markup, and this
fetcher is the second wall: whatever URL ends up in the document (an <img>, a stylesheet, an
@import, a font), WeasyPrint gets bytes only for a file of the project's static files and an
error for anything else, so no request ever leaves the machine because of what someone typed.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation

# WeasyPrint narrates every rendering step at INFO; the project's root logger is at INFO.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

from weasyprint import HTML  # noqa: E402 - after quieting its progress logger
from weasyprint.urls import URLFetcher, URLFetcherResponse  # noqa: E402

log = logging.getLogger(__name__)

# Relative URLs in the report (/static/css/report.css, ../fonts/x.ttf) resolve against this
# base. ".invalid" is reserved (RFC 2606): the name can never resolve, and the fetcher below
# answers it from disk without any network access anyway.
REPORT_HOST = "tmt-report.invalid"
REPORT_BASE_URL = f"https://{REPORT_HOST}/"


class RefusedURLError(ValueError):
    """A URL outside the project's static files."""


def static_file_for(url: str) -> Path | None:
    """The static file `url` names, or None if it names anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.netloc.lower() == REPORT_HOST:
        prefix = "/" + settings.STATIC_URL.strip("/") + "/"
        path = unquote(parts.path)
        if not path.startswith(prefix):
            return None
        relative = path[len(prefix) :]
        if not relative or ".." in PurePosixPath(relative).parts or "\\" in relative or "\x00" in relative:
            return None
        try:
            found = finders.find(relative)
        except SuspiciousFileOperation:
            return None
        if found and not isinstance(found, list):
            return Path(found) if Path(found).is_file() else None  # a folder is no file to read
        return _collected_file(relative)
    if scheme == "file" and parts.netloc in ("", "localhost"):
        try:
            path = Path(url2pathname(unquote(parts.path))).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        for root in settings.STATICFILES_DIRS:
            root_path = Path(root[1] if isinstance(root, tuple) else root).resolve()
            if path.is_relative_to(root_path) and path.is_file():
                return path
    return None


def _collected_file(relative: str) -> Path | None:
    """A file only collectstatic's output holds: in production the report names the hashed copy
    (css/report.3f2a9c1e.css), which no finder knows, and without it the PDF lost its styles."""
    if not settings.STATIC_ROOT:
        return None
    root = Path(settings.STATIC_ROOT).resolve()
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    return path if path.is_relative_to(root) and path.is_file() else None


class StaticOnlyURLFetcher(URLFetcher):
    """WeasyPrint's fetcher, narrowed to the project's static files (see the module docstring)."""

    def __init__(self) -> None:
        # No handlers are ever used: fetch() below never opens a connection.
        super().__init__(timeout=1, allowed_protocols=("https", "http", "file"))
        self.refused: list[str] = []
        self.served: list[str] = []

    def fetch(self, url: str, headers=None) -> URLFetcherResponse:
        path = static_file_for(url)
        if path is None:
            self.refused.append(url)
            raise RefusedURLError(f"the report renderer only reads the project's static files, not {url[:200]}")
        self.served.append(url)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": content_type})


@dataclass
class RenderedPdf:
    content: bytes
    pages: int
    seconds: float
    refused: list[str] = field(default_factory=list)


def html_to_pdf(html: str) -> RenderedPdf:
    fetcher = StaticOnlyURLFetcher()
    started = time.perf_counter()
    document = HTML(string=html, base_url=REPORT_BASE_URL, url_fetcher=fetcher).render()
    content = document.write_pdf()
    seconds = time.perf_counter() - started
    if fetcher.refused:
        log.warning("report renderer refused %d URL(s), e.g. %s", len(fetcher.refused), fetcher.refused[0][:200])
    return RenderedPdf(content=content, pages=len(document.pages), seconds=seconds, refused=fetcher.refused)
