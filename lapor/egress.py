"""Connections the server opens to addresses its users chose (today: agencies' webhooks), kept off the internal
network.

Whoever can make the server send requests to an address of their choosing could otherwise reach what only the
server reaches (the cloud's metadata service at 169.254.169.254, a database or an admin port on 10.x, a name that
resolves to 127.0.0.1) and learn from the answer, or from its absence, what lives there: server-side request
forgery. `DestinationPolicy` says where the server may connect: to addresses on the public internet, to the
networks an operator allows (an intranet the agencies' receivers sit on), and, outside production, to this
machine itself (development and the tests run their receivers on 127.0.0.1).

The policy is applied twice. `destination_refusal` judges an address when a user gives it: a literal IP, or every
address its name resolves to. `guarded_client`'s connection step judges the addresses it is about to connect to,
resolved there and then, and connects to one of those checked addresses; so a name that resolves elsewhere since
(DNS rebinding), an address recorded before the policy was narrowed, or one that never went through the first
check is caught where it matters. TLS still verifies the name the user gave and sends it as SNI.

Through a proxy (`DestinationPolicy.proxy`, for a network whose way out is an HTTP proxy) the proxy makes the
connection, so the server judges what it can before handing the request over: a literal address, and every address
a name resolves to here. A name this machine cannot resolve (behind a proxy, DNS is often the proxy's alone) goes to
the proxy unjudged, and the proxy's own rules must keep it off the internal network; so must they against a name
that resolves elsewhere for the proxy than here.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpcore2
import httpx2

log = logging.getLogger("lapor.egress")

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# The IPv6 prefix that carries an IPv4 address for a NAT64 gateway to connect to (RFC 6052).
_NAT64 = IPv6Network("64:ff9b::/96")


class DestinationRefused(Exception):
    """The server will not connect there: the address is outside its `DestinationPolicy`. `str()` says why in words
    fit to show whoever gave the address; it never names an address a name resolved to."""


@dataclass(frozen=True)
class DestinationPolicy:
    """Where the server may connect: a globally routable address (`ipaddress`'s `is_global`, and not multicast,
    unspecified or reserved), one in `allowed_networks`, or with `allow_loopback` this machine's own."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_loopback: bool = False
    proxy: str | None = None  # an http(s):// proxy that makes the connections (see the module's docstring)

    def refuses(self, address: IPAddress) -> str | None:
        """What `address` is when the server may not connect to it ("a private network address"); else None."""
        address = _ipv4_inside(address) or address
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_loopback:
            return None if self.allow_loopback else "this server itself (loopback)"
        return _not_public(address)

    def refusal(self, host: str, addresses: Sequence[IPAddress]) -> str | None:
        """Why the server may not connect to `host`, which is or resolves to `addresses`; None when it may go to
        every one of them. A name's addresses are not named: they may be internal ones the user should not learn."""
        kinds = [kind for address in addresses if (kind := self.refuses(address)) is not None]
        if not kinds:
            return None
        what = f"is {kinds[0]}" if _is_literal(host) else "resolves to an address outside the public internet"
        return f"{host} {what}: the server connects only to public internet addresses and networks its operator allows"


def _not_public(address: IPAddress) -> str | None:
    # Most specific first: 169.254.169.254, 0.0.0.0 and 240.0.0.1 are "private" to `ipaddress` too.
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private network address"
    if not address.is_global:
        return "not a public internet address"
    return None


def _ipv4_inside(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: IPv4-mapped (::ffff:10.0.0.1 is 10.0.0.1 on the wire), NAT64
    (64:ff9b::10.0.0.1, wherever a NAT64 gateway is) or 6to4 (2002:a00:1::, through a relay)."""
    if not isinstance(address, IPv6Address):
        return None
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


def _is_literal(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` (a name or a literal) stands for, in the resolver's order; OSError when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as error:  # an empty label or one over 63 characters, which URLs allow and DNS does not
        raise OSError(f"{host} is not a name DNS can hold") from error
    return list(dict.fromkeys(ip_address(str(info[4][0])) for info in infos))


def destination_refusal(policy: DestinationPolicy, host: str, port: int) -> str | None:
    """Why the server may not send to `host`:`port` that a user gives it now, in words fit to show them; None
    when it may. A name that does not resolve is refused too, as nothing could be delivered there, unless a proxy
    makes the connections (it resolves names itself)."""
    try:
        addresses = resolve(host, port)
    except OSError:
        if policy.proxy is not None:
            return None
        return f"{host} does not resolve to any address: check the name (a new name may take a while to be known)"
    return policy.refusal(host, addresses)


class _GuardedBackend(httpcore2.NetworkBackend):
    """httpcore2's connection step: resolve the host, refuse it when any of its addresses is outside the policy,
    then connect to the checked addresses in turn. httpcore2 does TLS on the stream returned, with the URL's host as
    server name, so the certificate is verified for the name the user gave."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._direct = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = resolve(host, port)
        except OSError as error:
            raise httpcore2.ConnectError(str(error)) from error
        refusal = self._policy.refusal(host, addresses)
        if refusal is not None:
            log.warning("refused to connect to %s:%d (%s): %s", host, port, ", ".join(map(str, addresses)), refusal)
            raise DestinationRefused(refusal)
        failures: list[Exception] = []
        for address in addresses:
            try:
                return self._direct.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as error:
                failures.append(error)
        raise failures[-1]


class _GuardedTransport(httpx2.HTTPTransport):
    """httpx2's own transport on a connection pool whose connection step is `_GuardedBackend`. httpx2 2.17 takes no
    network backend (encode/httpx#3749 proposes one), so the pool the transport made is replaced by one that has it;
    requests, responses and the mapping of errors stay httpx2's."""

    def __init__(self, policy: DestinationPolicy, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context,
            network_backend=_GuardedBackend(policy),
            keepalive_expiry=5.0,  # httpx2's default; httpcore2's (None) would keep idle connections for ever
        )


class _ProxiedTransport(httpx2.HTTPTransport):
    """httpx2's own transport through `policy.proxy`, judging each request's host first (`destination_refusal`)."""

    def __init__(self, policy: DestinationPolicy, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False, proxy=policy.proxy)
        self._policy = policy

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # The name as sent to the proxy (`xn--strae-oqa.example`), not `url.host`'s Unicode form, which the resolver
        # would encode by older rules into another name (`strasse.example`): found in review.
        host = request.url.raw_host.decode("ascii")
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        refusal = destination_refusal(self._policy, host, port)
        if refusal is not None:
            log.warning("refused to send to %s:%d through the proxy: %s", host, port, refusal)
            raise DestinationRefused(refusal)
        return super().handle_request(request)


def guarded_client(
    policy: DestinationPolicy, *, timeout: float, ssl_context: ssl.SSLContext | None = None
) -> httpx2.Client:
    """An HTTP client that connects only where `policy` allows, judged on the addresses it connects to (through
    `policy.proxy`, on what this machine resolves: the module's docstring); a refused address raises
    `DestinationRefused` before anything is sent. Redirects are not followed, and proxies named in the environment
    (HTTPS_PROXY) are not used: set for package managers and the like, they would make the connections unasked."""
    context = ssl_context or httpx2.create_ssl_context()
    transport = _GuardedTransport(policy, context) if policy.proxy is None else _ProxiedTransport(policy, context)
    return httpx2.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
