"""Fan-out of live events inside one event-stream (ASGI) process.

One reader per process looks at the event table every TMT_LIVE_RELAY_INTERVAL seconds (an
indexed "id > last" query, a few hundred microseconds) while at least one page is connected,
and hands each new event to the queues of the connected pages allowed to see its topic. The
cost while nothing changes is that one query per interval, whatever the number of pages; the
event table is the only thing every writing process (web, API, dispatcher, worker) shares on
the local defaults as in production.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import LiveEvent

log = logging.getLogger(__name__)

# A page slower than this many events behind is told to re-fetch everything instead.
QUEUE_SIZE = 200
# Sequence numbers are taken at INSERT but become visible at COMMIT, so a lower id can appear
# after a higher one was read. A missing id is looked for again for this long (an announcement
# is one autocommitted INSERT, so one missing longer than this failed and never comes).
GAP_WAIT_S = 3.0
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class Event:
    id: int
    topic: str
    incident_id: int | None
    created_at: float  # seconds since the epoch: when the change was announced

    def as_sse(self) -> str:
        incident = "null" if self.incident_id is None else str(self.incident_id)
        data = f'{{"incident": {incident}, "at": {self.created_at:.3f}}}'
        return f"id: {self.id}\nevent: {self.topic}\ndata: {data}\n\n"


@dataclass(eq=False)
class Subscriber:
    topics: frozenset[str]
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def offer(self, event: Event) -> None:
        if event.topic not in self.topics or self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class _Reader:
    """The table reads, in one thread of their own (one database connection per process)."""

    def __init__(self) -> None:
        self.last_id: int | None = None
        self.gaps: dict[int, float] = {}
        self.pruned_at = 0.0

    def read(self) -> list[Event]:
        try:
            return self._read()
        except Exception:
            # A lost connection (a database restart) is replaced at the next read.
            connection.close()
            raise

    def _read(self) -> list[Event]:
        if self.last_id is None:
            self.last_id = LiveEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
            return []
        now = time.monotonic()
        self.gaps = {gap: seen for gap, seen in self.gaps.items() if now - seen < GAP_WAIT_S}
        low = min([self.last_id, *(gap - 1 for gap in self.gaps)])
        rows = list(
            LiveEvent.objects.filter(id__gt=low)
            .order_by("id")
            .values_list("id", "topic", "incident_id", "created_at")[:1000]
        )
        events = []
        for pk, topic, incident_id, created_at in rows:
            if pk <= self.last_id and pk not in self.gaps:
                continue
            self.gaps.pop(pk, None)
            events.append(Event(pk, topic, incident_id, created_at.timestamp()))
        if rows:
            newest = rows[-1][0]
            seen = {row[0] for row in rows}
            for missing in range(self.last_id + 1, newest):
                if missing not in seen:
                    self.gaps[missing] = now
            self.last_id = max(self.last_id, newest)
        if now - self.pruned_at > PRUNE_EVERY_S:
            self.pruned_at = now
            keep = timedelta(minutes=settings.TMT_LIVE_EVENT_RETENTION_MINUTES)
            LiveEvent.objects.filter(created_at__lt=timezone.now() - keep).delete()
        return events


# Stream requests let into Django at once, per process (each holds a database connection
# while it is signed in: incidents/live/asgi.py).
SETUP_SLOTS = 4


class Hub:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.setup_slots = asyncio.Semaphore(SETUP_SLOTS)
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-relay")
        self._reader = _Reader()
        self._starting = asyncio.Lock()

    async def subscribe(self, topics: frozenset[str]) -> Subscriber:
        subscriber = Subscriber(topics)
        async with self._starting:
            if self._task is None or self._task.done():
                loop = asyncio.get_running_loop()
                # Where reading starts is fixed before the page hears "ready": a change it makes
                # right after must come after that point, not be taken for the past.
                try:
                    await loop.run_in_executor(self._executor, self._reader.read)
                except Exception:
                    log.warning("reading live events failed; the relay retries", exc_info=True)
                self._task = loop.create_task(self._run())
            self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = settings.TMT_LIVE_RELAY_INTERVAL
        # Keeps reading a little after the last page left, so a reload does not miss events.
        idle_since: float | None = None
        while True:
            if self.subscribers:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 30:
                self._reader.last_id = None
                return
            try:
                events = await loop.run_in_executor(self._executor, self._reader.read)
            except Exception:
                log.warning("reading live events failed; pages fall back to polling until it works", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                for subscriber in list(self.subscribers):
                    subscriber.offer(event)
            await asyncio.sleep(interval)


# Keyed by the loop itself, not its id(): a test server's loop that has closed must not hand its
# hub (and its reader task, which will never run again) to a new loop given the same id.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (one per ASGI process; a test server in a thread has its own)."""
    loop = asyncio.get_running_loop()
    if (found := _hubs.get(loop)) is None:
        found = _hubs[loop] = Hub()
    return found
