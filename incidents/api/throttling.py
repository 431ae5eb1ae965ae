"""Request budgets beyond DRF's defaults: per token, and for failed authentication by address."""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle, SimpleRateThrottle, UserRateThrottle

from incidents.api.models import ApiToken


class TokenRateThrottle(UserRateThrottle):
    """The "user" budget, counted per token when a token is used (a runaway script exhausts its
    own token's budget, not its owner's browser session), per user otherwise."""

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiToken):
            return self.cache_format % {"scope": self.scope, "ident": f"token-{request.auth.pk}"}
        return super().get_cache_key(request, view)


class FailedAuthenticationThrottle(SimpleRateThrottle):
    """Counts refused tokens per client address. DRF throttles only after authentication has
    succeeded, so without this an attacker could try tokens as fast as the server answers."""

    scope = "auth_failures"

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def wait_if_blocked(self, request) -> float | None:
        """Seconds to wait if this address used up its failures, without counting this request."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return self.wait() if len(self.history) >= self.num_requests else None

    def record_failure(self, request) -> None:
        if self.rate is None:
            return
        self.wait_if_blocked(request)  # loads and trims the history
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


def client_address(request) -> str:
    """The client's address as every throttle here reads it (X-Forwarded-For behind
    TMT_API_NUM_PROXIES proxies, else the peer), for the login lockout too."""
    return BaseThrottle().get_ident(request)
