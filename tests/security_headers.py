"""What the security headers of every page must say (shared by the header tests and the
production walk in Chromium)."""

from __future__ import annotations

# Directives whose value is fixed: everything from the site itself, nothing embedded or embedding.
STRICT = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
DENIED_FEATURES = ["camera", "microphone", "geolocation", "payment", "usb"]


def parse_policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        if words := part.split():
            directives[words[0].lower()] = words[1:]
    return directives


def assert_strict_csp(header: str | None, where: str) -> None:
    assert header, f"{where}: no Content-Security-Policy header"
    policy = parse_policy(header)
    for directive, sources in STRICT.items():
        assert policy.get(directive) == sources, f"{where}: {directive} is {policy.get(directive)}, not {sources}"
    sources = {source.lower() for values in policy.values() for source in values}
    for unsafe in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"):
        assert unsafe not in sources, f"{where}: the policy allows {unsafe}: {header}"


def assert_permissions_policy(header: str | None, where: str) -> None:
    assert header, f"{where}: no Permissions-Policy header"
    features = dict(part.strip().split("=", 1) for part in header.split(","))
    for feature in DENIED_FEATURES:
        assert features.get(feature) == "()", f"{where}: {feature} is not denied: {header}"
