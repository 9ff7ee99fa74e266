"""Webhooks go only to the public internet, to the networks the operator allows (LAPOR_WEBHOOK_ALLOWED_NETWORKS)
and, outside production, to this machine: an agency admin must not make the server send requests into its own
network. The address is judged when it is registered and again, on the address connected to, at every delivery.
The receiver is a real HTTP server on 127.0.0.1 that counts every request (`receiver`, in conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from services.followup.notifications import ITEM_ADDED, Notification, notification_id, record_notification
from tests.followup.conftest import KUPANG, Followup, subscribe

PRODUCTION = {"production": True, "training": False, "secret": "webhook-destinations-" + "x" * 32}
OPERATORS_WORDS = ": the server connects only to public internet addresses and networks its operator allows"


def register(app: Followup, url: str) -> Any:
    return app.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=app.admin(), json={"url": url})


def webhooks(app: Followup) -> list[dict[str, Any]]:
    response = app.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=app.admin())
    assert response.status_code == 200, response.text
    return response.json()


def assert_refused(response: Any, message: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["location"] == ["body", "url"]
    assert error["message"] == message


def notify_kupang(app: Followup, cause: str) -> None:
    """A new item in Kota Kupang's queue, straight into the outbox; the service's own notification loop sends it."""
    with app.ctx.db.transaction() as tx:
        record_notification(
            tx,
            Notification(notification_id(cause), ITEM_ADDED, KUPANG, "LAP-D-1", {"reason": "disposed"},
                         app.ctx.clock.now()),
        )


def webhooks_when(app: Followup, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while not done(listed := webhooks(app)):
        assert time.monotonic() < deadline, [(w["url"], w["delivered"], w["failed"], w["last_error"]) for w in listed]
        time.sleep(0.1)
    return listed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.1.2.3:8443/hook", "10.1.2.3 is a private network address"),
        ("https://192.168.0.10/hook", "192.168.0.10 is a private network address"),
        ("https://169.254.169.254/latest/meta-data/",
         "169.254.169.254 is a link-local address (such as a cloud metadata service)"),
        ("https://0.0.0.0/hook", "0.0.0.0 is the unspecified address"),
        ("https://[fd00::1]/hook", "fd00::1 is a private network address"),
        ("https://[fe80::1]/hook", "fe80::1 is a link-local address (such as a cloud metadata service)"),
        ("https://[::ffff:10.1.2.3]/hook", "::ffff:a01:203 is a private network address"),
    ],
)
def test_a_webhook_to_a_private_or_link_local_address_is_refused_and_nothing_is_recorded(followup, url, message):
    assert_refused(register(followup, url), message + OPERATORS_WORDS)
    assert webhooks(followup) == []


@pytest.mark.parametrize("host", ["hooks.pemda-53-71.invalid", "hooks..pemda-53-71.go.id", "x" * 64 + ".go.id"])
def test_a_webhook_to_a_name_that_does_not_resolve_is_refused(followup, host):
    response = register(followup, f"https://{host}/lapor")
    assert_refused(
        response, f"{host} does not resolve to any address: check the name (a new name may take a while to be known)"
    )
    assert webhooks(followup) == []


def test_in_production_a_webhook_to_this_machine_is_refused_without_naming_what_a_name_resolved_to(start):
    with start(**PRODUCTION) as app:
        app.register_directory()
        for url, message in [
            ("https://127.0.0.1:8443/hook", "127.0.0.1 is this server itself (loopback)"),
            ("https://127.8.9.10/hook", "127.8.9.10 is this server itself (loopback)"),
            ("https://[::1]:8443/hook", "::1 is this server itself (loopback)"),
            ("http://localhost:8080/hook", "localhost resolves to an address outside the public internet"),
        ]:
            response = register(app, url)
            assert_refused(response, message + OPERATORS_WORDS)
            if "localhost" in url:
                assert "127.0.0.1" not in response.text
        assert webhooks(app) == []


def test_in_production_localhost_is_allowed_and_delivered_to_when_the_operator_allows_its_network(start, receiver):
    with start(**PRODUCTION, webhook_allowed_networks="127.0.0.0/8,::1/128") as app:
        app.register_directory()
        subscribe(app, receiver, KUPANG, "/kupang", host="localhost")
        notify_kupang(app, "allowed")
        receiver.wait_for(1)
        [listed] = webhooks_when(app, lambda listed: listed[0]["delivered"] == 1)
    assert (listed["failed"], listed["last_error"], receiver.forged) == (0, None, 0)


def test_a_webhook_registered_before_production_is_refused_at_delivery_and_its_receiver_hears_nothing(
    start, receiver
):
    """Registered where loopback was allowed (development), delivered where it is not: the delivery's own check,
    on the address it would connect to, refuses for good and the receiver gets no request."""
    with start(training=False) as development:
        development.register_directory()
        literal = subscribe(development, receiver, KUPANG, "/literal")
        name = subscribe(development, receiver, KUPANG, "/name", host="localhost")
    with start(**PRODUCTION) as app:
        notify_kupang(app, "refused")
        listed = webhooks_when(app, lambda listed: all(webhook["failed"] == 1 for webhook in listed))
    assert receiver.attempts == []
    errors = {webhook["webhook_id"]: webhook["last_error"] for webhook in listed}
    assert errors == {
        literal["webhook_id"]: "not sent: 127.0.0.1 is this server itself (loopback)" + OPERATORS_WORDS,
        name["webhook_id"]: "not sent: localhost resolves to an address outside the public internet" + OPERATORS_WORDS,
    }
    assert [(webhook["delivered"], webhook["pending"]) for webhook in listed] == [(0, 0), (0, 0)]  # not retried
