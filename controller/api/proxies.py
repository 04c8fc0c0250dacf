"""Believing ``X-Forwarded-For/-Proto`` only from the reverse proxies the operator named.

Anyone can send those headers. The enrollment limiter keys on the client's
address, and a node's address is shown to the instructor and audited, so a
forged header must never become ``request.remote_addr``: the headers are
dropped unless the connection itself comes from ``LABFLEET_TRUSTED_PROXIES``,
and from a trusted proxy only the hop it appended is taken (werkzeug's ProxyFix).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

# Every header a proxy could use to speak for the client, as WSGI environ keys.
FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_REAL_IP")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """WSGI middleware: ProxyFix for a trusted peer, forwarding headers removed for everyone else."""

    def __init__(self, app, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)
        self.proxied = ProxyFix(app, x_for=1, x_proto=1)

    def __call__(self, environ, start_response):
        if self.networks and self.trusted(environ.get("REMOTE_ADDR", "")):
            return self.proxied(environ, start_response)
        for key in FORWARDED_KEYS:
            environ.pop(key, None)
        return self.app(environ, start_response)

    def trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
