"""Calls to the circuit breaker agent (the emergency stop, the halt's re-check and resume):
one short-lived client, and every failure turned into an answer, never an exception."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

STOP_PATH = "/api/v1/emergency-stop"
STATUS_PATH = "/api/v1/emergency-status"
RESUME_PATH = "/api/v1/resume-trading"
POSITIONS_PATH = "/api/v1/positions"
CIRCUIT_BREAKER_SYSTEM = "circuit_breaker"


@dataclass(frozen=True)
class AgentAnswer:
    ok: bool  # the call got an HTTP answer
    status_code: int | None
    body: Any
    error: str

    def as_json(self) -> dict:
        return {"http_status": self.status_code, "body": self.body, "error": self.error}


def agent_client() -> httpx.Client:
    # No keep-alive: a pooled connection must never hide a dead agent.
    return httpx.Client(
        timeout=settings.TMT_CIRCUIT_BREAKER_TIMEOUT,
        limits=httpx.Limits(max_keepalive_connections=0),
        trust_env=False,
        follow_redirects=False,
    )


def agent_call(client: httpx.Client, method: str, url: str, payload: dict | None = None) -> AgentAnswer:
    try:
        response = client.request(method, url, json=payload)
    except httpx.TimeoutException:
        return AgentAnswer(False, None, None, f"timed out after {settings.TMT_CIRCUIT_BREAKER_TIMEOUT:g} s")
    except httpx.ConnectError as exc:
        cause = exc.__cause__ or exc
        return AgentAnswer(False, None, None, f"unreachable: {getattr(cause, 'strerror', None) or cause}")
    except httpx.HTTPError as exc:
        return AgentAnswer(False, None, None, f"unreachable: {type(exc).__name__}: {exc}")
    text = response.text[:2000]
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = {"raw": text}
    return AgentAnswer(True, response.status_code, body, "")


def describe(answer: AgentAnswer) -> str:
    if not answer.ok:
        return answer.error
    body = answer.body if isinstance(answer.body, dict) else {}
    detail = body.get("detail") or body.get("error") or ("malformed response" if "raw" in body else "")
    return f"HTTP {answer.status_code}" + (f": {detail}" if detail else "")
