"""The server's copy of the public page and its JSON, replaced the moment something is published.

Everyone opens the status page at once during an incident; building it costs a dozen queries
and the uptime aggregate, serving a copy costs one cache read. Copies are stored under a
version that every publishing write replaces, so no reader sees an old copy after the commit;
the TTL (TMT_STATUS_CACHE_SECONDS) bounds what only time changes (a maintenance window starting,
a resolved incident leaving the 90-day history). Each worker process also keeps the bytes of the
copy it last served, and asks the shared cache for the current version at most once every
VERSION_CHECK_SECONDS: a Redis round trip (and Django building a client for it) was two thirds
of a hit's CPU, so most hits now touch nothing outside the process, and a publish made by
another process shows within that second. With several web processes CACHE_URL must name a
shared cache (Redis) for the replacement to reach them all; with the default per-process memory
cache, others catch up within the TTL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

VERSION_KEY = "status:version"
VERSION_CHECK_SECONDS = 1.0
_local: dict[str, tuple[str, float, object]] = {}
_seen: list = [None, 0.0]  # the version last read from the shared cache, and when


def _version() -> str:
    now = time.monotonic()
    if _seen[0] is not None and now - _seen[1] < VERSION_CHECK_SECONDS:
        return _seen[0]
    version = cache.get(VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex
        cache.add(VERSION_KEY, version, None)
        version = cache.get(VERSION_KEY, version)
    _seen[:] = [version, now]
    return version


def invalidate() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, None)
    _local.clear()
    _answers.clear()
    _seen[:] = [None, 0.0]


def invalidate_on_commit() -> None:
    """Now (for this transaction's own reads) and again at commit: a reader that built a copy
    from the state before the commit, under the version set now, must not keep it."""
    invalidate()
    transaction.on_commit(invalidate)


def cached(name: str, build: Callable[[], object]):
    """`build()`'s result for the current version, built at most once per TTL."""
    ttl = settings.TMT_STATUS_CACHE_SECONDS
    if ttl <= 0:
        return build()
    version = _version()
    now = time.monotonic()
    held = _local.get(name)
    if held is not None and held[0] == version and held[1] > now:
        return held[2]
    key = f"status:{version}:{name}"
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, ttl)
    _local[name] = (version, now + ttl, value)
    return value


# -- whole answers, for the middleware -------------------------------------------------------------

_answers: dict[str, tuple[str, float, int, list[tuple[str, str]], bytes]] = {}


def held_answer(path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The answer this process last gave for `path`, while the version and the TTL hold."""
    held = _answers.get(path)
    if held is None or held[0] != _version() or held[1] <= time.monotonic():
        return None
    return held[2], held[3], held[4]


def hold_answer(path: str, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
    ttl = settings.TMT_STATUS_CACHE_SECONDS
    if ttl > 0:
        _answers[path] = (_version(), time.monotonic() + ttl, status, headers, content)
