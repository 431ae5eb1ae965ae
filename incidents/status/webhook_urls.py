"""Where a subscriber's webhook may point: the public internet, never the portal's own network.

A webhook is a request the portal makes on a stranger's behalf; pointed at loopback, a private
or link-local range (a cloud's metadata service) or the portal itself, it would let anyone on
the internet reach what only the portal can. The host is resolved and every address it answers
with is checked, at subscription and again before each delivery (a name may be re-pointed
after it was accepted).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 500


class RefusedURL(ValueError):
    pass


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS]


def _own_hosts() -> set[str]:
    hosts = {(urlsplit(settings.TMT_SITE_URL).hostname or "").lower()}
    hosts.update(h.lower().lstrip(".") for h in settings.ALLOWED_HOSTS if h not in ("*", ""))
    return {h for h in hosts if h}


def _own_addresses() -> set:
    """Where the portal's public name points (best effort: a name that does not resolve here
    cannot be compared, and the host-name check above still holds)."""
    host = urlsplit(settings.TMT_SITE_URL).hostname
    if not host:
        return set()
    try:
        return set(_resolve(host, 443))
    except RefusedURL:
        return set()


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise RefusedURL(f"“{host}” does not resolve to an address.") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.append(address)
    return addresses


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not address.is_global or address.is_multicast


def check_webhook_url(url: str) -> str:
    """The URL, if the portal may post to it; RefusedURL with the reason otherwise."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise RefusedURL(f"At most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedURL("Not a valid URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL("Enter an http:// or https:// URL.")
    if parts.username or parts.password:
        raise RefusedURL("Credentials in the URL are not accepted; verify deliveries with the signature.")
    host = parts.hostname.lower().rstrip(".")
    if host in _own_hosts() or host == "localhost" or host.endswith(".localhost"):
        raise RefusedURL("This address is the status portal itself; webhooks must point elsewhere.")
    allowed = _allowed_networks()
    own_addresses = _own_addresses()
    for address in _resolve(host, port):
        if address in own_addresses:
            raise RefusedURL(f"“{host}” resolves to {address}, the status portal's own address.")
        if any(address in net for net in allowed):
            continue
        if _internal(address):
            raise RefusedURL(
                f"“{host}” resolves to {address}, on a loopback, private, link-local or reserved network; "
                "webhooks must point at a public address."
            )
    return url
