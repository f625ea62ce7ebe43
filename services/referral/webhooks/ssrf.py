"""Where webhooks may go: only http(s), and never into the clinic's own network unless allowed.

An admin-supplied URL is a request forgery risk: `http://169.254.169.254/` or `http://10.0.0.5/`
would make the referral service probe the inside. So a target host is resolved and every address
it resolves to must be public (not private, loopback, link-local, multicast, reserved or
unspecified), unless `CLINIC_WEBHOOK_ALLOW_HOSTS` names the host, the address or a network
holding it.

The check is made when an endpoint is saved (a helpful 422) and again at every connection: the
sender's transport resolves the host itself, vets the addresses and connects to the vetted one,
so a DNS answer that changes between the check and the send (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")


class TargetError(Exception):
    """The URL may not be sent to: a bad scheme, a host that does not resolve, or a refused address."""


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: IPv4-mapped (::ffff:a.b.c.d), 6to4
    (2002:aabb:ccdd::), Teredo's client, NAT64 (64:ff9b::a.b.c.d) or IPv4-compatible (::a.b.c.d)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1, judged as IPv6 below
        return low32
    return None


def _is_internal_one(address: IPAddress) -> bool:
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_link_local
        or address.is_loopback
        or address.is_private
    )


def is_internal(address: IPAddress) -> bool:
    """Anything but a public unicast address, judged on the IPv4 address an IPv6 one embeds too
    (Python's tables call 6to4 and NAT64 addresses global whatever they wrap)."""
    inner = embedded_ipv4(address)
    return _is_internal_one(address) or (inner is not None and _is_internal_one(inner))


@dataclass(frozen=True, slots=True)
class TargetGuard:
    """The SSRF policy: an allow-list of host names and of addresses or networks."""

    allow_names: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_allow_list(cls, entries: Iterable[str]) -> TargetGuard:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            value = _normal_host(entry)
            if not value:
                continue
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                names.add(value)
        return cls(frozenset(names), tuple(networks))

    def check_url(self, url: str) -> tuple[str, int]:
        """The static part: scheme and host. Return the host and port to resolve."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TargetError(f"not a valid URL: {exc}") from exc
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise TargetError("only http and https URLs are allowed")
        host = _normal_host(parts.hostname or "")
        if not host:
            raise TargetError("the URL has no host")
        return host, port or (443 if parts.scheme.lower() == "https" else 80)

    def address_allowed(self, host: str, address: IPAddress) -> bool:
        if _normal_host(host) in self.allow_names or not is_internal(address):
            return True
        candidates = {address, embedded_ipv4(address) or address}
        return any(a in net for a in candidates for net in self.allow_networks if a.version == net.version)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve `host` and return its addresses, all vetted; refuse if any one is internal."""
        host = _normal_host(host)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise TargetError(f"the host {host} does not resolve") from exc
            found = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not found:
            raise TargetError(f"the host {host} does not resolve")
        for address in found:
            if not self.address_allowed(host, address):
                raise TargetError(
                    f"the host {host} resolves to {address}, a private, loopback or link-local "
                    "address; CLINIC_WEBHOOK_ALLOW_HOSTS must name it to allow it"
                )
        return [str(a) for a in found]

    async def check(self, url: str) -> None:
        """Raise `TargetError` unless `url` may be sent to now."""
        host, port = self.check_url(url)
        await self.resolve(host, port)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves and vets at connect time, then connects to the vetted address itself."""

    def __init__(self, guard: TargetGuard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.resolve(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every webhook connection (httpx's: certificates verified against its
    CA bundle), built once per process: building them reads the bundle, about 17 ms of CPU."""
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded network backend; no proxies, no unix sockets."""

    def __init__(self, guard: TargetGuard, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        super().__init__(verify=tls_context(), trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(guard),
        )
