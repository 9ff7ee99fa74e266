"""Webhooks through an HTTP proxy (LAPOR_WEBHOOK_PROXY), for a network whose way out is a proxy: deliveries go
through it, while an address the server can judge as internal is still refused before the proxy hears of it. The
proxy is a real one (proxy.py) in a child process, and its access log says what it was asked to fetch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from lapor import egress
from lapor.egress import DestinationPolicy, destination_refusal
from lapor.settings import SettingsError, load_settings
from tests.conftest import wait_until
from tests.followup.conftest import KUPANG, Receiver, subscribe
from tests.followup.test_webhook_destinations import OPERATORS_WORDS, notify_kupang, register, webhooks_when

PRODUCTION = {"production": True, "training": False, "secret": "webhook-proxy-" + "x" * 32}


class Proxy:
    def __init__(self, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(self.port), "--num-workers", "1",
             "--num-acceptors", "1", "--log-level", "INFO"],
            stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            start_new_session=True,  # its own process group: proxy.py forks its workers, which stop with the group
        )
        wait_until(self._listening)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def fetched(self) -> list[str]:
        """The access log's request lines: 'POST 127.0.0.1:41234/kupang'."""
        lines = self.log.read_text().splitlines()
        return [line.split(" - ")[3] for line in lines if "access_log" in line]


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    running = Proxy(tmp_path / "proxy.log")
    yield running
    os.killpg(running.process.pid, signal.SIGTERM)
    running.process.wait(10)


def test_a_webhook_is_delivered_through_the_proxy(start: Callable[..., Any], receiver: Receiver, proxy: Proxy) -> None:
    with start(**PRODUCTION, webhook_allowed_networks="127.0.0.0/8", webhook_proxy=proxy.url) as app:
        app.register_directory()
        subscribe(app, receiver, KUPANG, "/kupang")
        notify_kupang(app, "through the proxy")
        receiver.wait_for(1)
        [listed] = webhooks_when(app, lambda listed: listed[0]["delivered"] == 1)
    assert (listed["failed"], receiver.forged) == (0, 0)
    wait_until(lambda: proxy.fetched() != [])
    assert proxy.fetched() == [f"POST 127.0.0.1:{receiver.server.server_address[1]}/kupang"]


def test_an_internal_address_is_refused_before_the_proxy_is_asked(
    start: Callable[..., Any], receiver: Receiver, proxy: Proxy
) -> None:
    """Registered while this machine's network was allowed, delivered after it no longer is: the server judges the
    address itself and sends nothing, not even to the proxy (which, on a real network, could reach it)."""
    with start(**PRODUCTION, webhook_allowed_networks="127.0.0.0/8", webhook_proxy=proxy.url) as app:
        app.register_directory()
        subscribe(app, receiver, KUPANG, "/kupang")
    with start(**PRODUCTION, webhook_proxy=proxy.url) as app:
        assert register(app, "https://10.1.2.3/hook").status_code == 422
        notify_kupang(app, "refused")
        [listed] = webhooks_when(app, lambda listed: listed[0]["failed"] == 1)
    assert listed["last_error"] == "not sent: 127.0.0.1 is this server itself (loopback)" + OPERATORS_WORDS
    time.sleep(0.2)  # the proxy writes its access line after answering; there must be none
    assert proxy.fetched() == []
    assert receiver.attempts == []


def test_a_name_this_machine_cannot_resolve_is_left_to_the_proxy() -> None:
    """Behind a proxy DNS is often the proxy's alone: such a name is accepted (the proxy's rules judge it), where
    without a proxy nothing could be delivered there."""
    name = "hooks.pemda-53-71.invalid"
    assert destination_refusal(DestinationPolicy(proxy="http://127.0.0.1:3128"), name, 443) is None
    assert "does not resolve" in (destination_refusal(DestinationPolicy(), name, 443) or "")
    # What does resolve here is still judged here.
    assert destination_refusal(DestinationPolicy(proxy="http://127.0.0.1:3128"), "localhost", 443) == (
        "localhost resolves to an address outside the public internet" + OPERATORS_WORDS
    )


def test_the_name_judged_is_the_name_the_proxy_is_asked_for(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """An internationalised name is sent to the proxy in its ASCII form (`xn--strae-oqa.example`); its Unicode form
    would be looked up here by older rules as another name (`strasse.example`), which an attacker could point
    elsewhere. The resolver is wrapped to record what it is asked (this machine's DNS knows neither name)."""
    asked: list[str] = []

    def internal(host: str, port: int) -> list[Any]:
        asked.append(host)
        return [ip_address("10.1.2.3")]

    monkeypatch.setattr(egress, "resolve", internal)
    client = egress.guarded_client(DestinationPolicy(proxy=proxy.url), timeout=5)
    with client, pytest.raises(egress.DestinationRefused):
        client.post("http://straße.example/hook", content=b"{}")
    assert asked == ["xn--strae-oqa.example"]
    time.sleep(0.2)
    assert proxy.fetched() == []


@pytest.mark.parametrize(
    "url", ["proxy.go.id:3128", "socks5://127.0.0.1:1080", "http://proxy.go.id", "http://proxy.go.id:3128/path",
            "http://user:hunter2@proxy.go.id:99999", "http://lapor:S3cr/et@proxy.go.id:3128"]
)
def test_a_proxy_setting_that_is_not_an_http_proxy_url_is_refused_without_repeating_it(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(data=tmp_path, webhook_proxy=url)
    assert "LAPOR_WEBHOOK_PROXY" in str(refused.value)
    assert url not in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert "S3cr" not in str(refused.value)
