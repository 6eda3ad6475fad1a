"""Who may reach the endpoint: client addresses behind trusted proxies, the Host
and Origin checks (the rest of the security model: :mod:`.routes`).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _client_ip(value: str | None) -> Any:
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _in(ip: Any, networks: tuple[Any, ...]) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in networks)


def _host_name(header: str | None) -> str | None:
    """The name in a Host header, without its port; None when there is none."""
    if header is None or not header.strip():
        return None
    value = header.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


@functools.lru_cache(maxsize=256)
def _host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    # (cached: parsing an address, or failing to, cost a request to the endpoint
    # as much again as the rest of its authorisation; a client sends one Host)
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True  # an address cannot be rebound to another
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return True  # RFC 6761: always the loopback
    return any(p == "*" or host == p or (p.startswith(".") and (host.endswith(p) or host == p[1:])) for p in patterns)


def _origin_authority(origin: str) -> str:
    """``host[:port]`` of an Origin header (scheme dropped), lower-case."""
    return origin.strip().lower().split("://", 1)[-1].rstrip("/")
