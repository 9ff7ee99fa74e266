"""Two-step approval: when an agency turns it on, its admin's follow-ups wait as drafts until the liaison officer
approves them (then both names are in the log) or sends them back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from schemas.events import ComplaintDisposed
from services.followup import approval
from services.followup.approval import DraftStatus
from tests.followup.conftest import DINKES, KUPANG, MALANG

TEXT = {"text": "Kepala puskesmas sudah ditegur; jam layanan kembali 08.00–14.00."}


@pytest.fixture
def approving(followup):
    """Kota Kupang asks for two-step approval; LAP-A-1 is accepted and waits for a follow-up."""
    return approval_asked(followup)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def on_each_database(request, start):
    """`start`, on the embedded SQLite store or on a fresh PostgreSQL schema holding store and read models."""
    overrides = {} if request.param == "sqlite" else {"store": request.getfixturevalue("postgres_url")}
    return lambda **more: start(**overrides, **more)


def approval_asked(app):
    path = f"/api/agencies/{KUPANG}/follow-up-approval"
    response = app.client.put(path, headers=app.admin(), json={"required": True})
    assert response.status_code == 200, response.text
    app.disposed("LAP-A-1")
    app.act("LAP-A-1", "accept", app.liaison())
    return app


def drafted(app, headers=None) -> dict:
    response = app.act("LAP-A-1", "follow-ups", headers or app.admin(), TEXT)
    assert response.status_code == 202, response.text
    return response.json()["draft"]


def review(app, draft_id: str, verb: str, headers: dict, body: dict | None = None):
    return app.client.post(f"/api/complaints/LAP-A-1/follow-ups/drafts/{draft_id}/{verb}", headers=headers, json=body)


def test_the_admins_follow_up_waits_as_a_draft_and_nothing_is_public(approving):
    outcome = approving.act("LAP-A-1", "follow-ups", approving.admin(), TEXT)
    assert outcome.status_code == 202
    assert outcome.json()["status"] == "pending_approval"
    assert outcome.json()["draft"]["drafted_by"] == "admin-kupang"
    assert "FollowUpPosted" not in approving.types("LAP-A-1")
    [item] = approving.queue(KUPANG, approving.liaison(), awaiting_approval=True)["items"]
    assert item["drafts_awaiting_approval"] == 1


def test_a_draft_is_shown_without_the_reporters_identity_it_names(followup):
    """An admin's draft naming the reporter (who phoned the agency; "Oktovianus Ndun" is a name no detector knows)
    was shown as written to the liaison officer and to oversight, while every other view of officials' texts scrubs
    the reporter's vault record from them (session 27)."""
    ref = followup.ctx.store.vault.put({"name": "Oktovianus Ndun", "phone": "081234567890"})
    approval = followup.client.put(
        f"/api/agencies/{KUPANG}/follow-up-approval", headers=followup.admin(), json={"required": True}
    )
    assert approval.status_code == 200
    followup.disposed("LAP-A-1", reporter_ref=ref)
    followup.act("LAP-A-1", "accept", followup.liaison())
    text = "Oktovianus Ndun sudah kami telepon di 0812 3456 7890; jam layanan kembali 08.00–14.00."
    assert followup.act("LAP-A-1", "follow-ups", followup.admin(), {"text": text}).status_code == 202
    for reader in (followup.liaison(), followup.bearer(Role.auditor), followup.bearer(Role.operator)):
        [draft] = followup.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=reader).json()
        assert "Ndun" not in draft["text"]
        assert "3456" not in draft["text"]
        assert "jam layanan kembali 08.00–14.00" in draft["text"]
    national = followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    [draft] = followup.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=national).json()
    assert draft["text"] == text


def test_the_liaison_officer_approves_and_the_log_names_both(approving):
    draft = drafted(approving)
    approved = review(approving, draft["draft_id"], "approve", approving.liaison(), None)
    assert approved.status_code == 200, approved.text
    assert approved.json()["follow_up_id"] == draft["follow_up_id"]
    posted = approving.events("LAP-A-1")[-1]
    assert posted.type == "FollowUpPosted"
    assert (posted.data["drafted_by"], posted.data["approved_by"]) == ("admin-kupang", "liaison-kupang")
    assert posted.data["text"] == TEXT["text"]
    assert posted.metadata["actor"] == "liaison-kupang"
    [shown] = approving.client.get(
        "/api/complaints/LAP-A-1/follow-ups/drafts", headers=approving.admin()
    ).json()
    assert (shown["status"], shown["reviewed_by"]) == ("approved", "liaison-kupang")
    assert approving.queue(KUPANG, approving.liaison(), awaiting_approval=True)["items"] == []


def test_an_approved_draft_posts_the_attachments_as_drafted(approving):
    attachment = {"url": "https://unggah.lapor.go.id/f/foto.jpg", "sha256": "ab" * 32, "media_type": "image/jpeg",
                  "size_bytes": 52_000}  # fmt: skip
    outcome = approving.act("LAP-A-1", "follow-ups", approving.admin(), {**TEXT, "attachments": [attachment]})
    assert outcome.status_code == 202, outcome.text
    assert outcome.json()["draft"]["attachments"] == [attachment]
    draft_id = outcome.json()["draft"]["draft_id"]
    assert review(approving, draft_id, "approve", approving.liaison()).status_code == 200
    assert approving.events("LAP-A-1")[-1].data["attachments"] == [attachment]


def test_a_draft_of_a_resolved_report_is_not_awaiting_approval_until_the_report_is_reopened(approving):
    """Resolved while the admin's draft waited, the report takes no follow-up: approving it is refused (409). The
    queue still counted the draft and listed the report under `awaiting_approval`, so the liaison officer's list of
    drafts to approve held one that could not be, until the report was closed (session 32). It waits, as a draft
    does on a report no longer in progress, and counts again once a dissatisfied reporter reopens the report."""
    draft = drafted(approving)
    liaison = approving.liaison()
    assert approving.act("LAP-A-1", "resolve", liaison, {"resolution": "Sudah selesai."}).status_code == 200
    assert approving.queue(KUPANG, liaison, awaiting_approval=True)["items"] == []
    [item] = approving.queue(KUPANG, liaison)["items"]
    assert (item["status"], item["drafts_awaiting_approval"]) == ("resolved", 0)
    assert [i["tracking_id"] for i in approving.queue(KUPANG, liaison, awaiting_approval=False)["items"]] == [
        "LAP-A-1"
    ]
    assert review(approving, draft["draft_id"], "approve", liaison).status_code == 409
    approving.feedback("LAP-A-1", satisfied=False, comment="Belum selesai.")
    [item] = approving.queue(KUPANG, liaison, awaiting_approval=True)["items"]
    assert (item["status"], item["drafts_awaiting_approval"]) == ("in_progress", 1)
    assert review(approving, draft["draft_id"], "approve", liaison).status_code == 200


def test_sent_back_with_a_note_it_is_never_posted(approving):
    draft = drafted(approving)
    sent = review(approving, draft["draft_id"], "send-back", approving.liaison(), {"note": "Sebutkan tanggalnya."})
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["note"]) == ("sent_back", "Sebutkan tanggalnya.")
    assert review(approving, draft["draft_id"], "approve", approving.liaison()).status_code == 409
    assert "FollowUpPosted" not in approving.types("LAP-A-1")


def test_a_draft_is_approved_by_someone_else_than_its_author(approving):
    draft = drafted(approving)  # by admin-kupang
    self_approval = review(approving, draft["draft_id"], "approve", approving.liaison(subject="admin-kupang"))
    assert self_approval.status_code == 403
    assert "FollowUpPosted" not in approving.types("LAP-A-1")


def test_only_the_liaison_officer_reviews(approving):
    draft = drafted(approving)
    assert review(approving, draft["draft_id"], "approve", approving.admin(subject="admin-2")).status_code == 403


def test_the_liaison_officers_own_follow_up_and_internal_notes_need_no_approval(approving):
    assert approving.act("LAP-A-1", "follow-ups", approving.liaison(), TEXT).status_code == 201
    note = approving.act("LAP-A-1", "follow-ups", approving.admin(), {"text": "Catatan.", "public": False})
    assert note.status_code == 201
    assert approving.types("LAP-A-1").count("FollowUpPosted") == 2


def test_two_liaison_officers_approving_at_once_post_it_once(approving):
    draft = drafted(approving)
    barrier = Barrier(2)

    def approve(subject: str) -> int:
        headers = approving.liaison(subject=subject)
        barrier.wait()
        return review(approving, draft["draft_id"], "approve", headers).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(approve, ["liaison-a", "liaison-b"]))
    assert statuses[0] == 200
    assert statuses[1] in (200, 409)
    assert approving.types("LAP-A-1").count("FollowUpPosted") == 1


def test_an_approval_with_a_stale_if_match_posts_nothing_and_the_draft_waits_again(approving):
    draft = drafted(approving)
    headers = {**approving.liaison(), "If-Match": '"1"'}
    assert review(approving, draft["draft_id"], "approve", headers).status_code == 412
    assert "FollowUpPosted" not in approving.types("LAP-A-1")
    [waiting] = approving.client.get(
        "/api/complaints/LAP-A-1/follow-ups/drafts", headers=approving.liaison(), params={"status": "pending"}
    ).json()
    assert waiting["draft_id"] == draft["draft_id"]
    assert review(approving, draft["draft_id"], "approve", approving.liaison()).status_code == 200


def test_a_stale_if_match_leaves_an_approval_under_way_alone(approving):
    """If-Match is checked before the draft is claimed (session 31). A stale approval claimed the draft first and put
    it back after its 412: an approval under way (liaison-a's, claimed and appending) was put back to `pending`, and
    a liaison officer approving meanwhile was refused with 409."""
    draft = drafted(approving)
    with approving.ctx.db.transaction() as tx:  # liaison-a's approval is under way: claimed, not settled yet
        assert approval.claim_for_approval(tx, draft["draft_id"], by="liaison-a", now=approving.clock.now())
    head = approving.ctx.store.head_position()
    headers = {**approving.liaison(subject="liaison-b"), "If-Match": '"1"'}
    stale = review(approving, draft["draft_id"], "approve", headers)
    assert stale.status_code == 412, stale.text
    assert stale.json()["current_version"] == approving.events("LAP-A-1")[-1].version
    assert approving.ctx.store.head_position() == head
    with approving.ctx.db.read() as tx:
        claimed = approval.get_draft(tx, "LAP-A-1", draft["draft_id"])
    assert claimed is not None
    assert (claimed.status, claimed.reviewed_by) == (DraftStatus.approving, "liaison-a")


def test_the_setting_applies_to_the_agencys_units_and_can_be_turned_off(approving):
    setting = approving.client.get(f"/api/agencies/{DINKES}/follow-up-approval", headers=approving.unit_officer())
    assert setting.json() == {
        "agency_id": DINKES, "required": True, "set_for": KUPANG, "updated_by": "admin-kupang",
        "updated_at": setting.json()["updated_at"], "version": 0,
    }
    off = approving.client.put(
        f"/api/agencies/{KUPANG}/follow-up-approval", headers=approving.admin(), json={"required": False}
    )
    assert off.json()["required"] is False
    assert approving.act("LAP-A-1", "follow-ups", approving.admin(), TEXT).status_code == 201


def test_setting_approval_with_a_stale_if_match_is_412_and_changes_nothing(on_each_database):
    """Two admins of Kota Kupang read the setting at one version; the first turns approval on, and the second's
    change from the same reading must not silently undo it. Until session 31 the route took no If-Match and showed
    no version. The version is the agency's own setting's: 0 while never set."""
    with on_each_database() as app:
        app.register_directory()
        path = f"/api/agencies/{KUPANG}/follow-up-approval"
        read = app.client.get(path, headers=app.admin())
        assert (read.json()["version"], read.headers["ETag"]) == (0, '"0"')
        first = app.client.put(path, headers={**app.admin(), "If-Match": '"0"'}, json={"required": True})
        assert first.status_code == 200, first.text
        assert (first.json()["version"], first.headers["ETag"]) == (1, '"1"')
        for stale in ('"0"', '"2"'):
            second = app.client.put(
                path, headers={**app.admin(subject="admin-kupang-2"), "If-Match": stale}, json={"required": False}
            )
            assert second.status_code == 412, second.text
            assert second.headers["content-type"] == "application/problem+json"
            assert second.json()["current_version"] == 1
        now = app.client.get(path, headers=app.admin()).json()
        assert (now["required"], now["updated_by"], now["version"]) == (True, "admin-kupang", 1)
        unit = app.client.put(f"/api/agencies/{DINKES}/follow-up-approval", headers={**app.admin(), "If-Match": '"0"'},
                              json={"required": False})
        assert (unit.status_code, unit.json()["version"]) == (200, 1)
        off = app.client.put(path, headers={**app.admin(subject="admin-kupang-2"), "If-Match": '"1"'},
                             json={"required": False})
        assert (off.status_code, off.json()["version"], off.json()["required"]) == (200, 2, False)


def test_a_setting_made_before_it_had_a_version_is_at_version_1(on_each_database):
    path = f"/api/agencies/{KUPANG}/follow-up-approval"
    with on_each_database() as app:
        app.register_directory()
        assert app.client.put(path, headers=app.admin(), json={"required": True}).status_code == 200
        with app.ctx.db.transaction() as tx:  # the table as it was before session 31
            tx.execute("ALTER TABLE followup_approval_settings DROP COLUMN version")
    with on_each_database(at=app.clock.now()) as app:
        assert app.client.get(path, headers=app.admin()).headers["ETag"] == '"1"'
        stale = app.client.put(path, headers={**app.admin(), "If-Match": '"0"'}, json={"required": False})
        assert (stale.status_code, stale.json()["current_version"]) == (412, 1)
        off = app.client.put(path, headers={**app.admin(), "If-Match": '"1"'}, json={"required": False})
        assert (off.status_code, off.json()["version"]) == (200, 2)


@pytest.mark.parametrize("flag", [0, 1, "yes"])
def test_approval_is_set_with_true_or_false_only(followup, flag):
    path = f"/api/agencies/{KUPANG}/follow-up-approval"
    response = followup.client.put(path, headers=followup.admin(), json={"required": flag})
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == ["body", "required"]
    assert followup.client.get(path, headers=followup.admin()).json()["required"] is False


def test_only_the_agencys_admin_turns_approval_on(followup):
    for headers in (followup.liaison(), followup.admin("pemda-35.73", "admin-malang")):
        response = followup.client.put(
            f"/api/agencies/{KUPANG}/follow-up-approval", headers=headers, json={"required": True}
        )
        assert response.status_code == 403


# -- drafts belong to the holding they were made in (session 24) ----------------------------------------------


def returned_and_disposed_again(app, agency_id: str) -> None:
    """Kupang returns LAP-A-1 as bukan wewenang; routing disposes it to `agency_id`, which accepts it."""
    returned = app.act("LAP-A-1", "return", app.liaison(), {"reason": "Bukan wewenang Kota Kupang."})
    assert returned.status_code == 200, returned.text
    now, policy = app.clock.now(), app.ctx.policy
    app.decide(
        "LAP-A-1",
        ComplaintDisposed(
            agency_id=agency_id,
            follow_up_due=policy.follow_up_due(now),
            ombudsman_offer_due=policy.ombudsman_offer_due(now),
        ),
    )
    assert app.act("LAP-A-1", "accept", app.liaison(agency_id, f"liaison-{agency_id}")).status_code == 200


def test_the_next_agency_never_sees_or_approves_the_previous_agencys_draft(on_each_database):
    with on_each_database() as app:
        app.register_directory()
        the_next_agency_never_sees_or_approves_the_previous_agencys_draft(approval_asked(app))


def the_next_agency_never_sees_or_approves_the_previous_agencys_draft(approving) -> None:
    draft = drafted(approving)  # by Kupang's admin
    returned_and_disposed_again(approving, MALANG)
    malang = approving.liaison(MALANG, "liaison-malang")
    listed = approving.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=malang)
    assert (listed.status_code, listed.json()) == (200, [])
    assert review(approving, draft["draft_id"], "approve", malang).status_code == 404
    assert review(approving, draft["draft_id"], "send-back", malang, {"note": "Bukan draf kami."}).status_code == 404
    assert "FollowUpPosted" not in approving.types("LAP-A-1")
    [item] = approving.queue(MALANG, malang)["items"]
    assert (item["drafts_awaiting_approval"], item["deadline_kind"]) == (0, "follow_up")
    assert approving.queue(MALANG, malang, awaiting_approval=True)["items"] == []


def test_a_draft_made_before_a_return_stays_behind_when_the_same_agency_gets_the_report_again(approving):
    old = drafted(approving)
    returned_and_disposed_again(approving, KUPANG)  # at the same moment: the training clock stands still
    assert approving.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=approving.liaison()).json() == []
    assert review(approving, old["draft_id"], "approve", approving.liaison()).status_code == 404
    new = drafted(approving)
    [listed] = approving.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=approving.liaison()).json()
    assert listed["draft_id"] == new["draft_id"]
    assert review(approving, new["draft_id"], "approve", approving.liaison()).status_code == 200
    [posted] = [event for event in approving.events("LAP-A-1") if event.type == "FollowUpPosted"]
    assert posted.data["follow_up_id"] == new["follow_up_id"]


def test_staff_of_the_national_admin_agency_are_refused_a_report_with_routing(approving):
    drafted(approving)
    approving.act("LAP-A-1", "return", approving.liaison(), {"reason": "Bukan wewenang Kota Kupang."})
    # kemenpanrb takes dispositions like any agency; a returned report is routing's, not its staff's
    panrb = approving.liaison(NATIONAL_ADMIN_AGENCY, "liaison-panrb")
    assert approving.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=panrb).status_code == 403
    assert approving.act("LAP-A-1", "accept", panrb).status_code == 403


def test_a_draft_recorded_before_drafts_named_their_holding_is_still_reviewed(on_each_database):
    with on_each_database() as app:
        app.register_directory()
        draft = drafted(approval_asked(app))
        with app.ctx.db.transaction() as tx:  # the table as it was before session 24
            tx.execute("ALTER TABLE followup_drafts DROP COLUMN holding")
    with on_each_database(at=app.clock.now()) as app:
        [listed] = app.client.get("/api/complaints/LAP-A-1/follow-ups/drafts", headers=app.liaison()).json()
        assert listed["draft_id"] == draft["draft_id"]
        assert app.queue(KUPANG, app.liaison())["items"][0]["drafts_awaiting_approval"] == 1
        assert review(app, draft["draft_id"], "approve", app.liaison()).status_code == 200


def test_a_units_own_setting_holds_for_the_reports_assigned_to_it(followup):
    response = followup.client.put(
        f"/api/agencies/{DINKES}/follow-up-approval", headers=followup.admin(), json={"required": True}
    )
    assert response.json()["set_for"] == DINKES  # Kota Kupang itself asks for nothing
    for tid in ("LAP-A-1", "LAP-A-2"):
        followup.disposed(tid)
        followup.act(tid, "accept", followup.liaison())
    followup.act("LAP-A-1", "assign", followup.liaison(), {"unit_id": DINKES})
    by_officer = followup.act("LAP-A-1", "follow-ups", followup.unit_officer(), TEXT)
    assert (by_officer.status_code, by_officer.json()["status"]) == (202, "pending_approval")
    assert followup.act("LAP-A-1", "follow-ups", followup.admin(), TEXT).status_code == 202  # the unit's report
    assert "FollowUpPosted" not in followup.types("LAP-A-1")
    assert review(followup, by_officer.json()["draft"]["draft_id"], "approve", followup.liaison()).status_code == 200
    assert followup.act("LAP-A-2", "follow-ups", followup.admin(), TEXT).status_code == 201  # the agency's own


def test_an_unknown_draft_id_is_quoted_cut_in_the_not_found(followup):
    """The 404 quoted the id from the URL whole, however long, where problems quote input cut
    (`lapor.problems.quoted`)."""
    followup.disposed("LAP-D-LONG")
    response = followup.act("LAP-D-LONG", f"follow-ups/drafts/{'x' * 5000}/approve", followup.liaison())
    assert response.status_code == 404
    assert response.json()["detail"] == f"complaint LAP-D-LONG has no draft {'x' * 63}…"
