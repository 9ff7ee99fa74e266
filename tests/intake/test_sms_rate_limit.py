"""The SMS 1708 rate limit counts each sender, not the gateway (session 29): the gateway is the webhook's only
client, so a limit per client address capped the whole national channel, while one phone flooding it was limited
only by that shared cap. Real SQLite and PostgreSQL stores; the gateway posts as the SMS integration client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from lapor.principal import Role
from tests.intake.conftest import REPORT, Intake, running_intake
from tests.intake.test_vault_leftovers import all_entries

TWO_A_MINUTE = {"submission_rate": "100000/minute", "sms_rate": "2/minute"}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/var/events.db"
    request.applymarker(pytest.mark.postgres)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def intake(store: str, tmp_path: Path) -> Iterator[Intake]:
    with running_intake(tmp_path / "var", store=store, limits=TWO_A_MINUTE) as running:
        yield running


@pytest.fixture
def gateway(intake: Intake) -> Callable[..., httpx2.Response]:
    headers = intake.bearer(Role.integration, channel="sms", subject="gateway-1708")

    def deliver(message_id: str, sender: str, text: str = "jalan rusak di Oebobo", **fields: Any) -> httpx2.Response:
        body = {"message_id": message_id, "sender": sender, "text": text, "received_at": "2026-03-06T08:00:00+07:00"}
        return intake.client.post("/api/channels/sms", json={**body, **fields}, headers=headers)

    return deliver


def submitted(intake: Intake) -> int:
    return sum(event.type == "ComplaintSubmitted" for event in intake.ctx.store.read_all(0, "complaint"))


def test_many_senders_through_the_one_gateway_are_not_limited_together(intake, gateway):
    """Before: the sixth citizen's message of the minute was a 429, whoever sent it (the gateway's budget)."""
    senders = [f"0812345678{n:02d}" for n in range(5)]
    statuses = [gateway(f"m-{sender}-{n}", sender).status_code for sender in senders for n in range(2)]
    assert statuses == [201] * 10
    assert submitted(intake) == 10


def test_a_senders_third_message_of_the_minute_is_refused_and_records_nothing(intake, gateway, store):
    # One number however the gateway writes it (intake normalises it to +62...), between another sender's messages.
    assert gateway("a-1", "081234567890").status_code == 201
    assert gateway("b-1", "081299990000").status_code == 201
    assert gateway("a-2", "+6281234567890").status_code == 201
    assert gateway("b-2", "6281299990000").status_code == 201
    head, vault = intake.head(), all_entries(store)

    refused = gateway("a-3", "6281234567890", "jalan rusak lagi, hubungi 081234567890")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"] == "/problems/rate-limited"
    assert "per sender" in problem["detail"]
    assert int(refused.headers["Retry-After"]) == problem["retry_after"] >= 1
    assert "1234567890" not in refused.text
    # A keyword alone (the help text, an SMS sent back too) is one more message of the sender.
    assert gateway("a-4", "081234567890", "KOTKUPANG").status_code == 429
    assert intake.head() == head
    assert all_entries(store) == vault  # not even an erased entry: nothing was written for it
    assert submitted(intake) == 4


def test_the_retry_of_an_accepted_message_gets_its_answer_though_the_sender_is_over_the_limit(intake, gateway):
    """The gateway redelivers a message whose answer it lost: it was recorded, so its answer is due whatever the
    sender sent since (before: the limit was checked first, and the retry got a 429)."""
    first = gateway("a-1", "081234567890")
    assert gateway("a-2", "081234567890").status_code == 201
    assert gateway("a-3", "081234567890").status_code == 429
    head = intake.head()

    again = gateway("a-1", "081234567890", received_at="2026-03-06T08:05:00+07:00")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert intake.head() == head
    # Another text under an accepted message_id is still the conflict it was, not a 429.
    assert gateway("a-2", "081234567890", "lampu jalan mati").status_code == 409


def test_one_number_written_with_the_international_prefix_is_one_sender_in_the_limit_the_vault_and_duplicates(
    intake, gateway
):
    """Session 30: lokal-id's normaliser does not read the international call prefix, so `0062812...` was kept as
    given: a sender with a budget of its own beside `0812...`/`62812...`/`+62812...`, a vault identity of its own
    spelling, and a reporter pseudonym that matched none of the subscriber's other reports."""
    text = "jalan rusak di depan SD Inpres Oebobo, lubang besar"
    assert gateway("a-1", "006281234567890", text).status_code == 201
    intake.caught_up()  # the reporter's first report is in intake's read model of recent reports
    second = gateway("a-2", "081234567890", text + " sekali")
    assert second.status_code == 201
    over = [gateway(f"a-{n}", sender, text) for n, sender in enumerate(("006281234567890", "+6281234567890"), 3)]
    assert [response.status_code for response in over] == [429, 429]
    first_event, second_event = (
        intake.events(event.data["tracking_id"])[0]
        for event in intake.ctx.store.read_all(0, "complaint") if event.type == "ComplaintSubmitted"
    )
    assert intake.ctx.vault.identity(first_event.data["reporter_ref"]) == {"phone": "+6281234567890"}
    assert second_event.data["duplicate_suspect_of"] == [first_event.data["tracking_id"]]


def test_the_gateways_token_files_nothing_through_the_integrated_systems_route(intake, gateway, store):
    """Session 32: the SMS gateway's token also posted to /api/channels/sms/complaints, where a report went in past
    the sender's limit and unparsed, as channel `integration` with channel_ref `sms:...`. That path is no route, for
    any caller, and answers as one: a 404 before the token is looked at."""
    assert gateway("a-1", "081234567890").status_code == 201
    assert gateway("a-2", "081234567890").status_code == 201
    assert gateway("a-3", "081234567890").status_code == 429
    head, vault = intake.head(), all_entries(store)
    body = {**REPORT, "external_id": "a-3", "reporter": {"phone": "081234567890"}}
    callers = {
        "the gateway": intake.bearer(Role.integration, channel="sms", subject="gateway-1708"),
        "another system": intake.bearer(Role.integration, channel="sambat-malang"),
        "the national admin": intake.bearer(Role.admin_national),
        "no one": {},
    }
    for caller, headers in callers.items():
        for path in ("/api/channels/sms/complaints", "/api/channels/%73ms/complaints"):
            refused = intake.client.post(path, json=body, headers=headers)
            assert refused.status_code == 404, (caller, path, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["type"] == "/problems/not-found"
            assert "POST /api/channels/sms" in refused.json()["detail"]
    assert intake.head() == head
    assert all_entries(store) == vault
    assert submitted(intake) == 2
