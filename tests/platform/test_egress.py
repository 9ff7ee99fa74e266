"""Where the server may connect on a user's behalf (`lapor.egress`): public internet addresses, the networks an
operator allows, and this machine only when loopback is allowed (outside production). The policy is judged on
literals here without connecting (public addresses cannot be reached from the test machine); the guarded client is
tried against a real TLS server on this machine."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from lapor.egress import DestinationPolicy, DestinationRefused, destination_refusal, guarded_client

PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888",
          "64:ff9b::808:808"]  # the last: 8.8.8.8 through a NAT64 gateway

NOT_PUBLIC = {
    "10.1.2.3": "a private network address",
    "172.16.5.4": "a private network address",
    "192.168.1.1": "a private network address",
    "fd00::1": "a private network address",
    "169.254.169.254": "a link-local address (such as a cloud metadata service)",
    "fe80::1": "a link-local address (such as a cloud metadata service)",
    "127.0.0.1": "this server itself (loopback)",
    "127.8.9.10": "this server itself (loopback)",
    "::1": "this server itself (loopback)",
    "0.0.0.0": "the unspecified address",
    "::": "the unspecified address",
    "224.0.0.1": "a multicast address",
    "ff02::1": "a multicast address",
    "240.0.0.1": "a reserved address",
    "100.64.0.1": "not a public internet address",  # carrier-grade NAT
    # IPv4 inside IPv6: mapped, NAT64 and 6to4 lead to the IPv4 address they carry.
    "::ffff:10.1.2.3": "a private network address",
    "::ffff:127.0.0.1": "this server itself (loopback)",
    "64:ff9b::a9fe:a9fe": "a link-local address (such as a cloud metadata service)",
    "2002:a00:1::": "a private network address",
}


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_allowed(address):
    assert DestinationPolicy().refuses(ip_address(address)) is None


@pytest.mark.parametrize(("address", "kind"), NOT_PUBLIC.items())
def test_an_address_off_the_public_internet_is_refused_and_said_what_it_is(address, kind):
    assert DestinationPolicy().refuses(ip_address(address)) == kind


def test_loopback_is_allowed_only_when_the_policy_says_so_and_nothing_else_with_it():
    development = DestinationPolicy(allow_loopback=True)
    assert [development.refuses(ip_address(a)) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1")] == [None] * 3
    assert development.refuses(ip_address("10.1.2.3")) == "a private network address"
    assert development.refuses(ip_address("0.0.0.0")) == "the unspecified address"  # reaches this machine too


def test_the_operators_networks_are_allowed_and_nothing_beside_them():
    intranet = DestinationPolicy((ip_network("10.20.0.0/16"), ip_network("fd00:20::/32")))
    for allowed in ("10.20.3.4", "fd00:20::5", "::ffff:10.20.3.4"):
        assert intranet.refuses(ip_address(allowed)) is None
    for refused in ("10.21.0.1", "fd00:21::5", "127.0.0.1", "169.254.169.254"):
        assert intranet.refuses(ip_address(refused)) is not None


def test_a_refusal_names_a_literal_but_never_what_a_name_resolved_to():
    policy = DestinationPolicy()
    assert policy.refusal("10.1.2.3", [ip_address("10.1.2.3")]) == (
        "10.1.2.3 is a private network address: the server connects only to public internet addresses and networks "
        "its operator allows"
    )
    refusal = policy.refusal("hooks.pemda.example", [ip_address("8.8.8.8"), ip_address("10.9.8.7")])
    assert refusal is not None
    assert refusal.startswith("hooks.pemda.example resolves to an address outside the public internet")
    assert "10.9.8.7" not in refusal
    assert policy.refusal("hooks.pemda.example", [ip_address("8.8.8.8")]) is None


def test_a_name_is_judged_on_what_it_resolves_to_and_one_that_does_not_resolve_is_refused():
    assert destination_refusal(DestinationPolicy(), "localhost", 443) == (
        "localhost resolves to an address outside the public internet: the server connects only to public internet "
        "addresses and networks its operator allows"
    )
    assert destination_refusal(DestinationPolicy(allow_loopback=True), "localhost", 443) is None
    assert destination_refusal(DestinationPolicy(), "hooks.pemda.invalid", 443) == (
        "hooks.pemda.invalid does not resolve to any address: check the name (a new name may take a while to be known)"
    )


# -- the guarded client on a real TLS server --------------------------------------------------------------------


class TlsReceiver:
    """An HTTPS server on 127.0.0.1 whose certificate names only `localhost`; it keeps the server names (SNI) that
    clients sent and counts the requests it answered."""

    def __init__(self, directory: Path) -> None:
        self.certificate = directory / "cert.pem"
        key = directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(self.certificate), "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost"],
            check=True, capture_output=True,
        )
        self.server_names: list[str | None] = []
        self.requests = 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.certificate)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    receiver = TlsReceiver(tmp_path)
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_the_guarded_client_connects_to_the_checked_address_and_verifies_the_name_given(tls_receiver):
    policy = DestinationPolicy(allow_loopback=True)
    with guarded_client(policy, timeout=5.0, ssl_context=tls_receiver.client_context()) as client:
        response = client.post(f"https://localhost:{tls_receiver.port}/hook", content=b"{}")
    assert response.status_code == 204
    assert tls_receiver.server_names == ["localhost"]  # SNI is the name, though 127.0.0.1 was connected to
    assert tls_receiver.requests == 1


def test_the_guarded_client_sends_nothing_to_an_address_its_policy_refuses(tls_receiver):
    with guarded_client(DestinationPolicy(), timeout=5.0, ssl_context=tls_receiver.client_context()) as client:
        for url in (f"https://localhost:{tls_receiver.port}/hook", f"https://127.0.0.1:{tls_receiver.port}/hook"):
            with pytest.raises(DestinationRefused):
                client.post(url, content=b"{}")
    assert (tls_receiver.server_names, tls_receiver.requests) == ([], 0)
