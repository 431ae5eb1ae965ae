"""Admission of event-stream requests, around the whole Django application.

A page's stream costs a database connection only while it is being signed in (the middleware
reads the session and the user, the view the permissions, then closes it). Five hundred pages
reconnecting at once (a restart, a network blip) would still open five hundred connections in
the same second, past PostgreSQL's max_connections (the bench's first run: HTTP 500s). So at most
SETUP_SLOTS stream requests per process go through Django at a time, each until its answer
starts; the others wait their turn, a few milliseconds each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.urls import reverse

from . import relay

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def limit_stream_setup(app: ASGIApp) -> ASGIApp:
    stream_path: list[str] = []

    async def admitted(scope: Scope, receive, send) -> None:
        if not stream_path:
            stream_path.append(reverse("live:stream"))
        if scope["type"] != "http" or scope["path"] != stream_path[0]:
            await app(scope, receive, send)
            return
        slots = relay.hub().setup_slots
        await slots.acquire()
        released = False

        async def send_and_release(message: Message) -> None:
            nonlocal released
            if not released and message["type"] == "http.response.start":
                released = True
                slots.release()
            await send(message)

        try:
            await app(scope, receive, send_and_release)
        finally:
            if not released:
                slots.release()

    return admitted
