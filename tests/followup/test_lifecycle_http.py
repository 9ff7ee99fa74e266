"""The whole path of a report through an agency, over HTTP: disposed → accepted → assigned → follow-up → resolved →
the reporter's answer → closed, or → reopened → resolved again; and what stale or illegal actions get."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from lapor.principal import OMBUDSMAN_AGENCY, Role
from schemas.events import ComplaintDisposed, Level
from tests.followup.conftest import DINKES, DISDIK, KUPANG, MALANG, later

PHOTO = {"url": "https://unggah.lapor.go.id/f/foto.jpg", "sha256": "ab" * 32, "media_type": "image/jpeg",
         "size_bytes": 52_000}  # fmt: skip


def test_dispose_accept_assign_follow_up_resolve_and_a_satisfied_reporter_closes_it(followup):
    tid = followup.disposed("LAP-PATH-1")
    liaison = followup.liaison()

    accepted = followup.act(tid, "accept", liaison, {"note": "Kami tangani."}, if_match=2)
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["ETag"] == '"3"'
    assert accepted.json()["status"] == "in_progress"

    assigned = followup.act(tid, "assign", liaison, {"unit_id": DINKES}, if_match=3)
    assert (assigned.json()["unit_id"], assigned.json()["level"]) == (DINKES, "unit")

    posted = followup.act(
        tid, "follow-ups", followup.unit_officer(), {"text": "Petugas Dinkes sudah ke lokasi."}, if_match=4
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["status"] == "posted"
    assert posted.json()["complaint"]["follow_up_due"] is None  # the follow-up deadline is met

    resolved = followup.act(tid, "resolve", liaison, {"resolution": "Puskesmas buka normal lagi."}, if_match=5)
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["feedback_due"] is not None

    followup.feedback(tid, satisfied=True)
    followup.settle()
    assert followup.types(tid)[-3:] == ["ComplaintResolved", "FeedbackGiven", "ComplaintClosed"]
    closed = followup.events(tid)[-1]
    assert closed.data["reason"] == "satisfied"
    assert closed.metadata["actor"] == "system"
    assert closed.metadata["causation_id"] == str(followup.events(tid)[-2].event_id)
    assert followup.queue(KUPANG, liaison)["items"] == []  # closed reports leave the queue


def test_a_dissatisfied_reporter_reopens_the_report_and_it_is_resolved_again(followup):
    tid = followup.disposed("LAP-PATH-2")
    liaison = followup.liaison()
    for verb, body in [("accept", None), ("resolve", {"resolution": "Sudah diperbaiki."})]:
        assert followup.act(tid, verb, liaison, body).status_code == 200
    later(followup, days=1)
    followup.feedback(tid, satisfied=False, comment="Belum, puskesmas masih tutup siang hari.")
    followup.settle()

    reopened = followup.events(tid)[-1]
    assert reopened.type == "ComplaintReopened"
    assert reopened.data["reason"] == "Belum, puskesmas masih tutup siang hari."
    [item] = followup.queue(KUPANG, liaison)["items"]
    assert (item["status"], item["deadline_kind"], item["reopen_count"]) == ("in_progress", "follow_up", 1)
    assert item["working_days_left"] == 5  # the follow-up clock restarted from the reporter's answer

    again = followup.act(tid, "resolve", liaison, {"resolution": "Jam layanan siang sudah dibuka."})
    assert again.status_code == 200
    followup.feedback(tid, satisfied=True)
    followup.settle()
    assert followup.types(tid)[-6:] == [
        "ComplaintResolved", "FeedbackGiven", "ComplaintReopened", "ComplaintResolved", "FeedbackGiven",
        "ComplaintClosed",
    ]


def test_a_stale_if_match_is_412_and_writes_nothing(followup):
    tid = followup.disposed("LAP-STALE-1")
    response = followup.act(tid, "accept", followup.liaison(), if_match=1)
    assert response.status_code == 412
    assert response.json()["current_version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert followup.version(tid) == 2


# -- a report that left the caller's agency or unit since it was read (session 30) ---------------------------------


def returned_by_another_liaison(app, tracking_id: str) -> list[str]:
    """Kupang's second liaison returns the report as bukan wewenang (suggesting Malang); the log's types after."""
    returned = app.act(tracking_id, "return", app.liaison(subject="liaison-2"),
                       {"reason": "Bukan wewenang Kota Kupang.", "suggested_agency_id": MALANG})
    assert returned.status_code == 200, returned.text
    return app.types(tracking_id)


def test_accepting_a_report_returned_meanwhile_with_its_old_version_is_412_and_writes_nothing(followup):
    """The liaison loaded the report at version 2; another returned it. A stale view, not a forbidden act: 412, the
    current version not told (the caller may no longer act on it), and nothing written."""
    tid = followup.disposed("LAP-GONE-1")
    before = returned_by_another_liaison(followup, tid)
    response = followup.act(tid, "accept", followup.liaison(), if_match=2)
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["detail"] == (
        f"complaint {tid} is no longer with {KUPANG}: it changed since version 2; read your queue again"
    )
    assert "current_version" not in body
    assert "ETag" not in response.headers
    assert followup.types(tid) == before


def test_accepting_a_report_returned_or_moved_meanwhile_is_409_naming_no_one_and_writes_nothing(followup):
    tid = followup.disposed("LAP-GONE-2")
    before = returned_by_another_liaison(followup, tid)
    response = followup.act(tid, "accept", followup.liaison())
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail == f"complaint {tid} is no longer with {KUPANG}: it was returned or moved since it was read; " \
                     "read your queue again"
    assert followup.types(tid) == before
    # Disposed on to Malang: still a conflict for Kupang, which never learns where it went; Malang accepts it.
    now, policy = followup.clock.now(), followup.ctx.policy
    followup.decide(tid, ComplaintDisposed(agency_id=MALANG, follow_up_due=policy.follow_up_due(now),
                                           ombudsman_offer_due=policy.ombudsman_offer_due(now)))
    for verb, body in (("accept", None), ("follow-ups", {"text": "Kami tangani."})):
        moved = followup.act(tid, verb, followup.liaison(), body, if_match=3)
        assert moved.status_code == 412, moved.text
        assert MALANG not in moved.text
        assert "current_version" not in moved.json()
    assert followup.act(tid, "accept", followup.liaison()).status_code == 409
    assert followup.types(tid) == [*before, "ComplaintDisposed"]
    assert followup.act(tid, "accept", followup.liaison(MALANG, "liaison-malang")).status_code == 200


def test_an_agency_that_never_held_the_report_is_still_refused_403(followup):
    tid = followup.disposed("LAP-GONE-3")
    returned_by_another_liaison(followup, tid)
    malang = followup.liaison(MALANG, "liaison-malang")
    for if_match in (None, 2):
        refused = followup.act(tid, "accept", malang, if_match=if_match)
        assert refused.status_code == 403, refused.text
        assert "current_version" not in refused.json()


def test_a_unit_officer_whose_unit_lost_the_report_to_another_unit_gets_409(followup):
    tid = followup.disposed("LAP-GONE-4")
    followup.act(tid, "accept", followup.liaison())
    followup.act(tid, "assign", followup.liaison(), {"unit_id": DINKES})
    followup.act(tid, "assign", followup.liaison(), {"unit_id": DISDIK})
    before = followup.types(tid)
    posted = followup.act(tid, "follow-ups", followup.unit_officer(), {"text": "Petugas ke lokasi."})
    assert posted.status_code == 409, posted.text
    assert posted.json()["detail"].startswith(f"complaint {tid} is no longer with {DINKES}:")
    assert followup.types(tid) == before
    # The other unit's officer, who never held it until now, is not refused for that.
    assert followup.act(tid, "follow-ups", followup.unit_officer(DISDIK, "officer-disdik"),
                        {"text": "Petugas ke lokasi."}).status_code == 201


def test_a_return_racing_an_accept_on_the_same_version_leaves_one_of_them_and_the_loser_learns_no_version(followup):
    tid = followup.disposed("LAP-GONE-5")
    barrier = Barrier(2)

    def act(verb: str) -> tuple[str, int, dict]:
        body = {"reason": "Bukan wewenang Kota Kupang."} if verb == "return" else None
        barrier.wait()
        response = followup.act(tid, verb, followup.liaison(subject=f"liaison-{verb}"), body, if_match=2)
        return verb, response.status_code, response.json()

    with ThreadPoolExecutor(2) as pool:
        outcomes = {verb: (status, body) for verb, status, body in pool.map(act, ["return", "accept"])}
    assert sorted(status for status, _ in outcomes.values()) == [200, 412]
    assert followup.version(tid) == 3
    if outcomes["return"][0] == 200:  # the accept lost to the return: Kupang may no longer act on the report
        assert "current_version" not in outcomes["accept"][1]
        assert followup.types(tid)[-1] == "DispositionReturned"
    else:
        assert outcomes["return"][1]["current_version"] == 3
        assert followup.types(tid)[-1] == "DispositionAccepted"


@pytest.mark.parametrize("digits", [20, 4301, 5000])
def test_an_if_match_longer_than_any_version_is_400_and_writes_nothing(followup, digits):
    followup.disposed("LAP-L-IM")
    response = followup.act("LAP-L-IM", "accept", {**followup.liaison(), "If-Match": "9" * digits})
    assert response.status_code == 400, response.text  # past 4,300 digits it was a 500
    assert response.json()["detail"] == f"If-Match names a version of at most 19 digits, not {digits}"
    assert "DispositionAccepted" not in followup.types("LAP-L-IM")


def test_two_officers_acting_at_once_one_wins_and_the_other_gets_412(followup):
    tid = followup.disposed("LAP-RACE-1")
    headers = [followup.liaison(subject="liaison-a"), followup.admin(subject="admin-b")]
    barrier = Barrier(2)

    def accept(who: dict[str, str]) -> int:
        barrier.wait()
        return followup.act(tid, "accept", who, if_match=2).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(accept, headers))
    assert statuses == [200, 412]
    assert followup.types(tid).count("DispositionAccepted") == 1


def test_racing_resolutions_without_if_match_still_resolve_once(followup):
    tid = followup.disposed("LAP-RACE-2")
    followup.act(tid, "accept", followup.liaison())
    barrier = Barrier(4)

    def resolve(n: int) -> int:
        barrier.wait()
        return followup.act(tid, "resolve", followup.liaison(subject=f"l{n}"), {"resolution": f"Selesai {n}."}
                            ).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(resolve, range(4)))
    assert statuses == [200, 409, 409, 409]  # the losers decide again on the resolved report: illegal now
    assert followup.types(tid).count("ComplaintResolved") == 1


def test_an_action_the_state_does_not_allow_is_409(followup):
    tid = followup.disposed("LAP-ILLEGAL-1")
    response = followup.act(tid, "resolve", followup.liaison(), {"resolution": "Selesai."})
    assert response.status_code == 409
    assert response.json()["complaint_status"] == "disposed"


def test_returned_as_bukan_wewenang_it_leaves_the_queue_for_routing(followup):
    tid = followup.disposed("LAP-RETURN-1")
    response = followup.act(
        tid, "return", followup.liaison(), {"reason": "Urusan Pemkot Malang.", "suggested_agency_id": MALANG}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["agency_id"]) == ("returned", None)
    returned = followup.events(tid)[-1]
    assert returned.data == {"agency_id": KUPANG, "reason": "Urusan Pemkot Malang.", "suggested_agency_id": MALANG}
    assert followup.queue(KUPANG, followup.liaison())["items"] == []


def test_an_assignment_outside_the_agency_is_422(followup):
    tid = followup.disposed("LAP-ASSIGN-1")
    followup.act(tid, "accept", followup.liaison())
    response = followup.act(tid, "assign", followup.liaison(), {"unit_id": MALANG + "/dinkes"})
    assert response.status_code == 422
    assert followup.types(tid)[-1] == "DispositionAccepted"


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("follow-ups", {"text": "Sudah ditangani <script>alert(1)</script>"}),
        ("follow-ups", {"text": "Lihat <a href=\"javascript:alert(1)\">di sini</a>"}),
        ("follow-ups", {"text": "Petugas\x00sudah ke lokasi."}),
        ("follow-ups", {"text": "Petugas sudah ke lokasi.", "public": 0}),
        ("follow-ups", {"text": "Petugas sudah ke lokasi.", "public": "yes"}),
        ("follow-ups", {"text": "Foto lokasi.", "attachments": [{**PHOTO, "size_bytes": "52000"}]}),
        ("follow-ups", {"text": "Foto lokasi.", "attachments": [{**PHOTO, "size_bytes": True}]}),
        ("follow-ups", {"text": "Foto lokasi.", "attachments": [{**PHOTO, "url": "https://unggah.lapor.go.id/f/\u202egpj.exe"}]}),
        ("follow-ups", {"text": "Foto lokasi.", "attachments": [{**PHOTO, "url": "https://unggah.lapor.go.id/f/a\x00.jpg"}]}),
        ("follow-ups", {"text": "Foto lokasi.", "attachments": [{**PHOTO, "url": "https://unggah.lapor.go.id/f/a\u200b.jpg"}]}),
        ("resolve", {"resolution": "<img src=x onerror=\"alert(1)\">"}),
        ("return", {"reason": "Bukan\x1bwewenang kami."}),
    ],
    ids=["script tag", "javascript link", "NUL", "public 0", "public yes", "size as text", "size true",
         "url with a direction override", "url with NUL", "url with a zero width space", "event handler",
         "escape character"],
)
def test_what_an_officer_writes_is_plain_text_and_a_flag_is_true_or_false(followup, action, body):
    """An officer's follow-up is shown to the reporter and the public: plain text, as a reporter's own report is
    (`lapor.limits.check_plain_text`); and `public` is a boolean, not 0 or "yes" (lax validation read 0 as an
    internal note), an attachment's size a number, not text or true (lax validation read true as 1 byte), and its
    address without control characters or characters that show nothing (session 31: `…/\u202egpj.exe` was posted,
    shown to the reporter and the public as `…/exe.jpg`). Refused with the field named; nothing is appended."""
    tid = followup.disposed("LAP-PLAIN-1")
    followup.act(tid, "accept", followup.liaison())
    before = followup.types(tid)
    response = followup.act(tid, action, followup.liaison(), body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"][0] == "body"
    assert followup.types(tid) == before


@pytest.mark.parametrize(
    ("action", "body", "location"),
    [
        ("return", b'{"reason": "Bukan wewenang kami.", "reason": "Sudah kami tangani."}', ["body", "reason"]),
        ("follow-ups", b'{"text": "Petugas sudah ke lokasi.", "public": false, "public": true}', ["body", "public"]),
        (
            "follow-ups",
            b'{"text": "Foto lokasi.", "attachments": [{"url": "https://unggah.lapor.go.id/f/a.jpg", '
            b'"url": "https://unggah.lapor.go.id/f/b.jpg", "sha256": "' + b"ab" * 32 + b'", '
            b'"media_type": "image/jpeg", "size_bytes": 52000}]}',
            ["body", "attachments", "0", "url"],
        ),
    ],
    ids=["reason twice", "public twice", "an attachment's url twice"],
)
def test_a_body_naming_a_member_twice_is_422_and_writes_nothing(followup, action, body, location):
    """`{"reason": "…", "reason": "…"}` was decided on the last value, which another reader of the same request (a
    gateway, a proxy checking requests) may read as the first: a return recorded with a reason the officer's tool
    never showed, a follow-up public that was sent as an internal note. Refused with the member named (session 31)."""
    tid = followup.disposed("LAP-TWICE-1")
    followup.act(tid, "accept", followup.liaison())
    before = followup.types(tid)
    headers = {**followup.liaison(), "Content-Type": "application/json"}
    response = followup.client.post(f"/api/complaints/{tid}/{action}", headers=headers, content=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"] == location
    assert response.json()["errors"][0]["type"] == "duplicated_member"
    assert followup.types(tid) == before


def test_an_attachment_given_twice_is_posted_once(followup):
    """Each attachment of a follow-up is kept once, in the order first given (session 31: it was posted twice)."""
    tid = followup.disposed("LAP-PHOTO-2")
    followup.act(tid, "accept", followup.liaison())
    other = {**PHOTO, "url": "https://unggah.lapor.go.id/f/denah.jpg", "sha256": "cd" * 32}
    body = {"text": "Foto lokasi.", "attachments": [PHOTO, other, PHOTO]}
    assert followup.act(tid, "follow-ups", followup.liaison(), body).status_code == 201
    assert followup.events(tid)[-1].data["attachments"] == [PHOTO, other]


def test_an_attachments_size_written_with_a_zero_fraction_is_the_whole_number(followup):
    """To JSON Schema, which the API document speaks, 52000.0 is an integer; the event records 52000."""
    tid = followup.disposed("LAP-PHOTO-1")
    followup.act(tid, "accept", followup.liaison())
    body = {"text": "Foto lokasi.", "attachments": [{**PHOTO, "size_bytes": 52_000.0}]}
    assert followup.act(tid, "follow-ups", followup.liaison(), body).status_code == 201
    [recorded] = followup.events(tid)[-1].data["attachments"]
    assert recorded == PHOTO
    assert type(recorded["size_bytes"]) is int


def test_an_internal_note_does_not_meet_the_follow_up_deadline(followup):
    tid = followup.disposed("LAP-NOTE-1")
    followup.act(tid, "accept", followup.liaison())
    note = followup.act(tid, "follow-ups", followup.liaison(), {"text": "Cek dulu ke kepala puskesmas.",
                                                                 "public": False})
    assert note.status_code == 201
    assert note.json()["complaint"]["follow_up_due"] is not None
    assert followup.events(tid)[-1].data["public"] is False


def test_the_ombudsman_acts_on_a_report_it_took_over(followup):
    tid = followup.disposed("LAP-OMB-1")
    followup.act(tid, "accept", followup.liaison())
    followup.taken_over_by_ombudsman(tid, from_level=Level.agency)
    ombudsman = followup.bearer(Role.ombudsman, "ombudsman-1")
    assert followup.act(tid, "follow-ups", ombudsman, {"text": "Ombudsman memeriksa."}).status_code == 201
    assert followup.act(tid, "resolve", ombudsman, {"resolution": "Maladministrasi diperbaiki."}).status_code == 200
    # ... and the agency that held it no longer acts on it: a conflict (session 30: 403), naming no one
    held_before = followup.act(tid, "follow-ups", followup.liaison(), {"text": "Kami juga."})
    assert held_before.status_code == 409
    assert OMBUDSMAN_AGENCY not in held_before.json()["detail"]


def test_the_ombudsman_accepts_and_acts_on_a_report_taken_over_before_the_agency_accepted_it(followup):
    """The usual case of an unresponsive agency: it never accepted the disposition. The takeover leaves the report
    disposed, now to the Ombudsman, who must accept it to act on it (it could not, so nobody could)."""
    tid = followup.disposed("LAP-OMB-2")
    followup.taken_over_by_ombudsman(tid, from_level=Level.agency)
    ombudsman = followup.bearer(Role.ombudsman, "ombudsman-1")
    assert followup.act(tid, "follow-ups", ombudsman, {"text": "Ombudsman memeriksa."}).status_code == 409
    assert followup.act(tid, "accept", ombudsman).status_code == 200
    assert followup.act(tid, "follow-ups", ombudsman, {"text": "Ombudsman memeriksa."}).status_code == 201
    assert followup.act(tid, "resolve", ombudsman, {"resolution": "Maladministrasi diperbaiki."}).status_code == 200
    assert followup.types(tid)[-3:] == ["DispositionAccepted", "FollowUpPosted", "ComplaintResolved"]
    assert followup.events(tid)[-3].data["agency_id"] == OMBUDSMAN_AGENCY
    # The agency it was disposed to no longer accepts it (its view is stale: 409, session 30), and the Ombudsman
    # accepts nothing it did not take over.
    assert followup.act(tid, "accept", followup.liaison()).status_code == 409
    other = followup.disposed("LAP-OMB-3")
    assert followup.act(other, "accept", ombudsman).status_code == 403



def test_an_assignment_after_the_agencys_own_deadline_passed_keeps_the_report_at_the_agencys_level(followup):
    """Kota Kupang holds the report itself and its follow-up deadline passes; routing has not marked it yet when
    Kupang assigns it to its Dinkes. The report stays at the agency's level, so routing's red mark goes from Kupang
    to its province (session 30: it went to the unit's level, and the mark from the unit to Kupang itself). Before
    the deadline passes, the same assignment takes it to the unit's level."""
    liaison = followup.liaison()
    in_time, late = followup.disposed("LAP-LVL-1"), followup.disposed("LAP-LVL-2")
    for tid in (in_time, late):
        assert followup.act(tid, "accept", liaison).status_code == 200
    assert followup.act(in_time, "assign", liaison, {"unit_id": DINKES}).json()["level"] == "unit"
    later(followup, days=8)  # past the five working days
    assigned = followup.act(late, "assign", liaison, {"unit_id": DINKES})
    assert assigned.status_code == 200, assigned.text
    assert (assigned.json()["unit_id"], assigned.json()["level"]) == (DINKES, "agency")
    assert followup.events(late)[-1].data["level"] == "agency"


@pytest.mark.parametrize("second", ['"3"', "*"])
def test_if_match_sent_twice_with_different_values_is_422_naming_it_and_writes_nothing(followup, second):
    """FastAPI took the first of two If-Match headers silently: a proxy adding its own decided which version the
    command was checked against (session 31). The same value twice is that value."""
    tid = followup.disposed("LAP-L-IM2")
    response = followup.act(tid, "accept", [*followup.liaison().items(), ("If-Match", '"2"'), ("If-Match", second)])
    assert response.status_code == 422, response.text  # before: 200, checked against the first
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in response.json()["errors"]] == [["header", "if-match"]]
    assert "If-Match given more than once" in response.json()["detail"]
    assert "DispositionAccepted" not in followup.types(tid)
    same = followup.act(tid, "accept", [*followup.liaison().items(), ("If-Match", '"2"'), ("If-Match", '"2"')])
    assert same.status_code == 200, same.text
