"""What a webhook may point at, and each tenant's signing secret.

The edge checks a notify URL at submit (reportgrid/validation.py) and an operator's tenant
default (`reportgrid admin tenant update --webhook-url`) with `url_problem`; the delivery
function (functions/webhooks/safe_http.py) checks every address the host resolves to with
`address_problem` before it connects, and connects to that vetted address only, so a name
that resolves to a public address at submit and a private one later is still refused.

Refused everywhere: addresses that are not globally routable (RFC 1918 private, shared
100.64/10, loopback, link-local with the instance metadata service 169.254.169.254 and its
IPv6 twin fd00:ec2::254, unique-local, multicast, reserved, unspecified), an IPv4 address
however it is spelt ("2130706433" and "0x7f.1" are 127.0.0.1 to getaddrinfo) or embedded in
IPv6 (::ffff:10.0.0.1, 2002:a00:1::, 64:ff9b::10.0.0.1: judged by the IPv4 address they
reach), and in AWS any scheme but https. The local region's own receivers
listen on loopback, so its launch alone sets ENV.WEBHOOK_ALLOW_LOOPBACK: then, and only for
a loopback host, http and the loopback addresses are allowed.

Signing secrets are derived, never stored: HMAC-SHA256 over (tenant, version) keyed by the
deployment's root secret (Secrets Manager, resources.WEBHOOK_SECRET_NAME). Rotating a
tenant's secret is a version bump on its item; the root secret never leaves the service's
and the operator's hands.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from reportgrid import resources

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The instance metadata service (EC2, ECS task metadata sits on 169.254.170.2): link-local
# or unique-local anyway, named so the refusal says what it is.
METADATA_ADDRESSES: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# RFC 6052's well-known NAT64 prefix; the local-use 64:ff9b:1::/48 (RFC 8215) is not
# unwrapped: it is not global, so it is refused as private.
NAT64_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 -- a prefix, not a secret
_DERIVATION_LABEL: Final = b"reportgrid webhook signing secret v1"


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches: IPv4-mapped (::ffff:0:0/96),
    6to4 (2002::/16, RFC 3056: bits 16-47) or NAT64's well-known prefix (64:ff9b::/96,
    RFC 6052: the last 32 bits, which a NAT64 gateway connects to). Such an address is
    judged by that IPv4 address alone: 64:ff9b::10.0.0.1 is 10.0.0.1, and Python counts
    the prefix itself global."""
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.ipv4_mapped or address.sixtofour


def address_problem(address: IpAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a webhook may not connect to `address`, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            # The local region's receivers are reached on 127.0.0.1 itself, never embedded.
            problem = address_problem(embedded)
            return None if problem is None else f"{address} embeds {problem}"
    if address in METADATA_ADDRESSES:
        return f"{address} is the instance metadata service"
    if address.is_loopback:
        return None if allow_loopback else f"{address} is a loopback address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_unspecified or address.is_reserved:
        return f"{address} is a reserved address"
    if address.is_private or not address.is_global:
        return f"{address} is a private address"
    return None


def ip_literal(host: str) -> IpAddress | None:
    """The address a host names literally, in any spelling getaddrinfo would accept
    ("10.0.0.1", "::1", "2130706433", "0x7f.1", "010.0.0.1"), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton is what resolves the short and numeric forms of IPv4.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_loopback_host(host: str) -> bool:
    address = ip_literal(host)
    if address is not None:
        return address.is_loopback
    return host.lower().rstrip(".") in LOOPBACK_NAMES


def url_problem(url: str, *, allow_loopback: bool = False) -> str | None:
    """Why `url` may not be a webhook, or None if it may (its host's resolved addresses
    are checked again at every delivery)."""
    limit = resources.WEBHOOK_MAX_URL_LENGTH
    if len(url) > limit:
        return f"is {len(url)} characters; at most {limit}"
    if not url.isprintable() or any(c.isspace() for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"is not a URL ({err})"
    host = parts.hostname or ""
    loopback = bool(host) and is_loopback_host(host)
    allowed_schemes = ("https", "http") if allow_loopback and loopback else ("https",)
    if parts.scheme.lower() not in allowed_schemes:
        return "must be an https:// URL"
    if "@" in parts.netloc:
        return "must not carry a user name or password (user:password@)"
    if "#" in url:
        return "must not have a #fragment"
    if not host:
        return "has no host"
    if port == 0:
        return "has port 0"
    if loopback and not allow_loopback:
        return f"{host} is a loopback host"
    address = ip_literal(host)
    if address is not None:
        problem = address_problem(address, allow_loopback=allow_loopback)
        if problem is not None:
            return f"host {problem}"
    return None


def signing_secret(root: bytes, tenant: str, version: int) -> str:
    """Tenant's signing secret number `version`: what the operator hands the tenant
    (`reportgrid admin tenant webhook-secret`) and what the delivery function signs with."""
    message = b"\0".join((_DERIVATION_LABEL, tenant.encode(), str(version).encode()))
    return SECRET_PREFIX + hmac.new(root, message, hashlib.sha256).hexdigest()
