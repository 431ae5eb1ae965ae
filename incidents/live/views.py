"""The event stream the open pages listen to, and the summary they read for the tab title."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from . import relay, selectors
from .models import LiveEvent

# Which permission lets a page hear about which topic: the same its pages and their fragments
# need, so an event never tells anyone about something they could not open.
TOPIC_PERMISSIONS = {
    LiveEvent.Topic.INCIDENT: "incidents.view_incident",
    LiveEvent.Topic.HEALTH: "monitoring.view_healthtarget",
}

# A stream served by a synchronous (WSGI) worker would hold one of its few threads for as long
# as the page stays open: there the page is told to poll instead.
UNAVAILABLE = "retry: 60000\nevent: unavailable\ndata: {}\n\n"


def _topics_for(request: HttpRequest) -> frozenset[str]:
    """The topics the signed-in person may hear of."""
    try:
        return frozenset(topic for topic, perm in TOPIC_PERMISSIONS.items() if request.user.has_perm(perm))
    finally:
        # The session, the user and the permissions were read on this request's thread, whose
        # connection would otherwise stay open for as long as the page does (hundreds of them).
        # The stream itself reads nothing: the process's one relay reads for every page. How
        # many pages are signed in at once is limited around Django (incidents/live/asgi.py).
        connection.close()


@require_GET
async def stream(request: HttpRequest) -> HttpResponse:
    if not isinstance(request, ASGIRequest):
        return HttpResponse(UNAVAILABLE, content_type="text/event-stream")
    topics = await sync_to_async(_topics_for)(request)
    response = StreamingHttpResponse(_events(topics), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied answers unless told not to; a buffered event arrives too late.
    response["X-Accel-Buffering"] = "no"
    return response


async def _events(topics: frozenset[str]) -> AsyncIterator[str]:
    hub = relay.hub()
    subscriber = await hub.subscribe(topics)
    heartbeat = settings.TMT_LIVE_HEARTBEAT_SECONDS
    # Ended now and then so a reconnecting page is logged in and allowed again (a revoked role
    # or an expired session stops the stream within this long).
    ends_at = time.monotonic() + settings.TMT_LIVE_STREAM_MAX_SECONDS
    try:
        yield f"retry: 2000\nevent: ready\ndata: {json.dumps({'topics': sorted(topics)})}\n\n"
        while (left := ends_at - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(subscriber.queue.get(), timeout=min(heartbeat, left))
            except TimeoutError:
                if subscriber.overflowed:
                    subscriber.overflowed = False
                    yield "event: resync\ndata: {}\n\n"
                else:
                    yield ": ping\n\n"
                continue
            chunk = [event.as_sse()]
            while not subscriber.queue.empty():
                chunk.append(subscriber.queue.get_nowait().as_sse())
            if subscriber.overflowed:
                subscriber.overflowed = False
                chunk.append("event: resync\ndata: {}\n\n")
            yield "".join(chunk)
    finally:
        hub.unsubscribe(subscriber)


@require_GET
def summary(request: HttpRequest) -> JsonResponse:
    if not request.user.has_perm(TOPIC_PERMISSIONS[LiveEvent.Topic.INCIDENT]):
        return JsonResponse({"unacknowledged": 0, "major": []})
    return JsonResponse(selectors.live_summary())
