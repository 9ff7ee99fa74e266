"""A confidential report and a reader who may not see it (session 30): the answer is the one an unknown ID gets,
status, headers and body alike, and it is given before the work only a visible report needs (the rest of the
stream read and folded, the vault's identity, the view), so that the work done does not tell either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from lapor.principal import Role
from services.intake.idempotency import IdDerivation
from tests.intake.conftest import Intake

CHOSEN_ID = "warga-app-5f1c"
INFORMATION = {"text": "Lokasinya di depan SD Inpres Oebobo."}


def shown(response: httpx2.Response, tracking_id: str) -> tuple[int, dict[str, str], str]:
    """The answer with what differs between any two requests left out: the date, the fresh correlation id (which
    must not be the one the client chose), and the tracking ID asked for."""
    correlation_id = response.headers["X-Correlation-ID"]
    assert correlation_id != CHOSEN_ID
    headers = {name: value for name, value in response.headers.items() if name not in ("date", "x-correlation-id")}
    return response.status_code, headers, response.text.replace(correlation_id, "…").replace(tracking_id, "…")


def confidential_report_with_a_history(intake: Intake, **flags: Any) -> dict[str, Any]:
    """A confidential report that was pended and answered: its receipt."""
    receipt = intake.submit(confidential=True, reporter={"name": "Maria Manafe"}, **flags)
    intake.pend(receipt["tracking_id"])
    answered = intake.client.post(
        f"/api/complaints/{receipt['tracking_id']}/information", json=INFORMATION,
        headers={"X-Reporter-Token": receipt["reporter_token"]},
    )
    assert answered.status_code == 200
    return receipt


@pytest.mark.parametrize("anonymous", [False, True])
def test_a_confidential_report_is_answered_as_an_unknown_id_to_every_reader_without_access(
    intake: Intake, anonymous: bool
) -> None:
    """Until session 30 a client that chose its X-Correlation-ID had it back for an unknown ID and a fresh one for
    an anonymous report (the request was unlinked from the client), so the header said whether a confidential
    report exists."""
    existing = confidential_report_with_a_history(intake, anonymous=anonymous)["tracking_id"]
    unknown = IdDerivation.fresh().tracking_id
    readers = [{}, {"X-Reporter-Token": "x" * 43}, intake.bearer(Role.admin_agency, agency_id="pemda-35.07")]
    for reader in readers:
        for chosen in ({}, {"X-Correlation-ID": CHOSEN_ID}):
            headers = {**reader, **chosen}
            answers = [intake.client.get(f"/api/complaints/{existing}", headers=headers)]
            answers.append(intake.client.get(f"/api/complaints/{unknown}", headers=headers))
            assert shown(answers[0], existing) == shown(answers[1], unknown)
            assert answers[0].status_code == 404
    for chosen in ({}, {"X-Correlation-ID": CHOSEN_ID}):
        headers = {"X-Reporter-Token": "x" * 43, **chosen}
        acted = [
            intake.client.post(f"/api/complaints/{tracking_id}/information", json=INFORMATION, headers=headers)
            for tracking_id in (existing, unknown)
        ]
        assert shown(acted[0], existing) == shown(acted[1], unknown)
        assert acted[0].status_code == 404


Calls = list[tuple[str, tuple[Any, ...], dict[str, Any]]]


@pytest.fixture
def calls(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The store's reads and the vault's reads as they happen (each passed on to the real store and vault)."""
    made: Calls = []

    def recording(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            made.append((name, args, kwargs))
            return method(*args, **kwargs)

        return record

    monkeypatch.setattr(intake.ctx.store, "read_stream", recording("store", intake.ctx.store.read_stream))
    for name in ("get", "identity"):
        monkeypatch.setattr(intake.ctx.vault, name, recording("vault", getattr(intake.ctx.vault, name)))
    return made


def test_a_confidential_report_is_refused_before_the_work_only_a_visible_report_needs(
    intake: Intake, calls: Calls
) -> None:
    """Until session 30 the refusal came last: the whole stream read and folded, the reporter's identity read from
    the vault, the directory and a duplicate's original looked up, the view built, and only then the 404, where an
    unknown ID was refused at once."""
    receipt = confidential_report_with_a_history(intake)
    existing, unknown = receipt["tracking_id"], IdDerivation.fresh().tracking_id

    def reads(tracking_id: str, **headers: str) -> Calls:
        calls.clear()
        assert intake.client.get(f"/api/complaints/{tracking_id}", headers=headers).status_code == 404
        return [(name, args[1:], kwargs) for name, args, kwargs in calls]  # the stream's name left out

    # The public and a reporter token that does not open it: the submission alone is read, as for an unknown ID, and
    # once (the route takes what the concealment read for the log line).
    for headers in ({}, {"X-Reporter-Token": "x" * 43}):
        assert reads(existing, **headers) == reads(unknown, **headers) == [("store", (), {"limit": 1})]
    # An official of another agency: the stream is read and folded (who holds the report decides), nothing more.
    other_agency = intake.bearer(Role.admin_agency, agency_id="pemda-35.07")
    assert reads(existing, **other_agency) == [("store", (), {"limit": 1}), ("store", (), {"from_version": 1})]
    # Its reporter is shown it: the whole stream, and the identity the view scrubs from its texts.
    calls.clear()
    response = intake.client.get(f"/api/complaints/{existing}", headers={"X-Reporter-Token": receipt["reporter_token"]})
    assert response.status_code == 200
    assert {name for name, _, _ in calls} == {"store", "vault"}
