"""Serves a repeat GET of the public status page, its JSON and banner script from this process's
copy of the whole answer, skipping the middleware below it, URL resolution and the view.

It sits right below CommonMiddleware: the host check, the HTTPS redirect and the security
headers (CSP, Permissions-Policy, HSTS) above it still run on every request. What the layers
below add (X-Frame-Options, Cache-Control, Content-Type) is kept with the copy. A request
carrying an Origin (CORS), a query string or cookies takes the full path, as does anything but a
plain 200 answer. Copies follow the page's cache version (cache.py): a publish replaces them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from incidents.status import cache

PATHS = frozenset({"/status/", "/status.json", "/status/embed.js"})


class StatusAnswerMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method != "GET"
            or request.path_info not in PATHS
            or request.META.get("QUERY_STRING")
            or "HTTP_ORIGIN" in request.META
            or request.COOKIES
        ):
            return self.get_response(request)
        held = cache.held_answer(request.path_info)
        if held is not None:
            status, headers, content = held
            response = HttpResponse(content, status=status)
            for name, value in headers:
                response[name] = value
            return response
        response = self.get_response(request)
        if response.status_code == 200 and not response.cookies and not response.streaming:
            cache.hold_answer(request.path_info, 200, list(response.items()), response.content)
        return response
