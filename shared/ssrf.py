"""The SSRF guard for webhook URLs: resolve once, refuse internal addresses, connect to what was checked.

``check_url`` is called twice: by the API when a job is submitted (a bad URL is a 422 before any
work is done) and by the delivery worker before every attempt (DNS may have changed since). It
returns a ``Target`` that carries the one address that was checked; the delivery connects to that
address (sending the real ``Host`` header and TLS server name), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot point the request somewhere else.

Refused: any scheme but http/https, credentials in the URL, and any host of which *any* resolved
address is not globally routable: private (10/8, 172.16/12, 192.168/16, fc00::/7 incl. the EC2
metadata address fd00:ec2::254), loopback, link-local (169.254/16 incl. 169.254.169.254, fe80::/10),
shared address space (100.64/10, e.g. Alibaba's metadata 100.100.100.200), unspecified, multicast,
reserved and documentation ranges, and IPv6 forms that embed a forbidden IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``). Refusing when *any*
address is forbidden defeats a DNS answer that mixes a public and a private address.

``allow_private=True`` (``MLQUEUE_WEBHOOK_ALLOW_PRIVATE``, local development and tests only) lifts
the address check; the other checks still apply.

``socket.getaddrinfo`` has no timeout of its own: the API runs ``check_url`` in a thread under a
timeout; the delivery worker's thread simply waits (the resolver's own timeouts bound it).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ErrorCode, InvalidInput

ALLOWED_SCHEMES = {"http": 80, "https": 443}
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: the low 32 bits are an IPv4 address
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT; Python calls it neither

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(InvalidInput):
    """A webhook URL that may not be called. ``retryable`` is True only when the host did not
    resolve (DNS may be back later); a forbidden address or a malformed URL never becomes valid."""

    def __init__(self, detail: str, *, retryable: bool = False) -> None:
        super().__init__(detail, code=ErrorCode.WEBHOOK_URL_REFUSED)
        self.retryable = retryable


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL as given and the one address it was checked against."""

    scheme: str
    host: str  # the hostname as ASCII (IDNA), lower case, no brackets; an IP literal stays a literal
    port: int
    ip: str  # the checked address to connect to
    path_and_query: str
    url: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.scheme}://{ip}:{self.port}{self.path_and_query}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == ALLOWED_SCHEMES[self.scheme] else f"{host}:{self.port}"


def _refuse(url: str, why: str, *, retryable: bool = False) -> UrlRefused:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return UrlRefused(f"webhook URL {shown!r} refused: {why}", retryable=retryable)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address (includes cloud metadata 169.254.169.254)"
    if ip in SHARED_ADDRESS_SPACE:
        return "shared address space (100.64.0.0/10, carrier-grade NAT)"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved or not ip.is_global:
        return "reserved or not globally routable address"
    return None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    # Forms that carry an IPv4 address: the IPv4 address decides.
    embedded = ip.ipv4_mapped
    if embedded is None and ip in NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if embedded is not None:
        reason = _v4_reason(embedded)
        return f"embeds {embedded}: {reason}" if reason else None
    if ip.sixtofour is not None:
        reason = _v4_reason(ip.sixtofour)
        if reason:
            return f"6to4 address embeds {ip.sixtofour}: {reason}"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_site_local:
        return "site-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address (includes unique-local fc00::/7 and metadata fd00:ec2::254)"
    if ip.is_reserved or not ip.is_global:
        # includes IPv4-compatible ::a.b.c.d (deprecated), Teredo and local-use NAT64 64:ff9b:1::/48
        return "reserved or not globally routable address"
    return None


def forbidden_reason(address: str | IPAddress) -> str | None:
    """Why an address may not be called, or None when it is globally routable."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "IPv6 address with a zone (link-local)"
        return _v6_reason(ip)
    return _v4_reason(ip)


# typeshed types getaddrinfo's family as AF_INET or AF_INET6 only, which would make the check below
# unreachable to mypy; the check stays (the address is parsed as an IP next), against a set
_IP_FAMILIES: frozenset[int] = frozenset({socket.AF_INET, socket.AF_INET6})


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    out: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family not in _IP_FAMILIES:
            continue
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


def check_url(url: str, *, allow_private: bool) -> Target:
    """Parse, resolve once and check ``url``; raise ``UrlRefused`` (a 422 ``InvalidInput`` with code
    ``webhook_url_refused``) with the reason, else return the ``Target`` to connect to."""
    if not isinstance(url, str) or not url:
        raise _refuse(str(url), "empty URL")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refuse(url, "whitespace or control characters in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(url, f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise _refuse(url, f"scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise _refuse(url, "credentials (user:password@) are not allowed in the URL")
    raw_host = parts.hostname  # lower-cased, brackets removed
    if not raw_host:
        raise _refuse(url, "no host")
    if port is None:
        port = ALLOWED_SCHEMES[scheme]
    if not 0 < port < 65536:
        raise _refuse(url, f"port {port} is out of range")
    try:
        literal: IPAddress | None = ipaddress.ip_address(raw_host)
    except ValueError:
        literal = None
    if literal is not None:
        host = literal.compressed
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id:
            raise _refuse(url, "IPv6 zone identifiers are not allowed")
    else:
        try:
            host = raw_host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _refuse(url, f"invalid host name ({exc})") from None
    try:
        addresses = [literal.compressed] if literal is not None else resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise _refuse(url, f"host {host!r} did not resolve ({exc})", retryable=True) from None
    if not addresses:
        raise _refuse(url, f"host {host!r} has no IPv4 or IPv6 address", retryable=True)
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason:
                resolved = "" if literal is not None else f" (resolves to {address})"
                raise _refuse(url, f"{host}{resolved}: {reason}")
    path = parts.path or "/"
    path_and_query = f"{path}?{parts.query}" if parts.query else path
    return Target(scheme=scheme, host=host, port=port, ip=addresses[0], path_and_query=path_and_query, url=url)
