"""Routing over HTTP, end to end on the composed app (real SQLite store and read models): the verification queue,
each decision with its illegal cases (409) and stale versions (412), disposition with proposals, returns and
bounces, and the directory and routing rules, whose every change is an event naming who made it."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest

from lapor.principal import NATIONAL_ADMIN_AGENCY, Principal, Role
from schemas.events import ComplaintAssigned, ComplaintVerified, DispositionAccepted, DispositionReturned
from services.routing.directory import RULES_STREAM
from tests.routing.conftest import caught_up
from tests.routing.harness import agency_principal, append_as, submit_report, wib

KUPANG = "pemda-53.71"


@pytest.fixture
def app(serve):
    with serve() as client:
        yield client


def submit(client, tracking_id: str, **details: Any) -> None:
    submit_report(client.app.state.context, tracking_id, **details)
    caught_up(client)


def post(client, tracking_id: str, verb: str, headers: dict[str, str], body: dict[str, Any] | None = None):
    response = client.post(f"/api/complaints/{tracking_id}/{verb}", json=body or {}, headers=headers)
    caught_up(client)
    return response


def returned_by(client, tracking_id: str, agency_id: str, suggested: str | None = None) -> None:
    """The agency sends the report back as bukan wewenang (followup's decision, appended as followup does)."""
    append_as(
        client.app.state.context, tracking_id, agency_principal(agency_id),
        DispositionAccepted(agency_id=agency_id),
        DispositionReturned(agency_id=agency_id, reason="Jalan provinsi, bukan wewenang kota.",
                            suggested_agency_id=suggested),
    )
    caught_up(client)


# -- the verification queue ---------------------------------------------------------------------------------


def test_the_queue_lists_reports_oldest_first_with_the_working_days_left_to_verify(app, admin):
    for tracking_id in ("LAP-C", "LAP-A", "LAP-B"):
        submit(app, tracking_id)
    page = app.get("/api/verification-queue", headers=admin).json()
    assert [item["tracking_id"] for item in page["items"]] == ["LAP-C", "LAP-A", "LAP-B"]
    assert page["total"] == 3
    first = page["items"][0]
    assert first["verification"]["working_days_left"] == 3
    assert first["verification"]["overdue"] is False
    assert first["proposals"][0] == {"agency_id": KUPANG, "agency_name": "Pemerintah Kota Kupang",
                                     "basis": "region", "rule_id": None}


def test_a_verification_deadline_passed_on_friday_shows_overdue_on_saturday(serve, admin):
    """Submitted on Tuesday, verification is due at the end of Friday. On Saturday no working day had passed since,
    and the queue said 0 working days left ("due today") beside `overdue: true` (session 29)."""
    with serve(training=True) as app:
        app.app.state.context.clock.set(wib(2031, 6, 10, 9))  # a Tuesday
        submit(app, "LAP-1")
        app.app.state.context.clock.set(wib(2031, 6, 14, 10))  # Saturday
        verification = app.get("/api/verification-queue/LAP-1", headers=admin).json()["verification"]
    assert verification["due"] == "2031-06-13T16:59:59.999999Z"
    assert (verification["working_days_left"], verification["overdue"]) == (-1, True)


def test_pended_reports_leave_the_default_queue_and_are_listed_on_request(app, admin):
    submit(app, "LAP-1")
    assert post(app, "LAP-1", "pend", admin, {"information_requested": "Di mana tepatnya?"}).status_code == 200
    assert app.get("/api/verification-queue", headers=admin).json()["total"] == 0
    [item] = app.get("/api/verification-queue", params={"status": "pended"}, headers=admin).json()["items"]
    assert item["information_requested"] == "Di mana tepatnya?"
    assert item["archive_due"] is not None


def test_monitoring_roles_see_the_queue_with_personal_data_masked_and_the_national_admin_sees_it_whole(
    app, admin, bearer
):
    submit(app, "LAP-1", title="Saya Budi, HP 081234567890, puskesmas tutup")
    operator = bearer(Role.operator)
    [seen_by_operator] = app.get("/api/verification-queue", headers=operator).json()["items"]
    [seen_by_admin] = app.get("/api/verification-queue", headers=admin).json()["items"]
    assert "081234567890" in seen_by_admin["title"]
    assert "081234567890" not in seen_by_operator["title"]


@pytest.mark.parametrize("role", [Role.operator, Role.auditor, Role.ombudsman])
def test_the_reporters_name_written_by_an_official_is_scrubbed_from_the_queue_for_monitoring_roles(
    app, admin, bearer, role
):
    """The national admin's pend question names the reporter ("Oktovianus Ndun", which no detector knows as a
    name). Monitoring roles never see who reported, in the queue as in the complaint view and the audit."""
    ref = app.app.state.context.store.vault.put({"name": "Oktovianus Ndun", "phone": "081234567890"})
    submit(app, "LAP-1", reporter_ref=ref)
    asked = "Oktovianus Ndun, mohon kirim foto jalan yang rusak."
    assert post(app, "LAP-1", "pend", admin, {"information_requested": asked}).status_code == 200
    params = {"status": "pended"}
    [monitored] = app.get("/api/verification-queue", params=params, headers=bearer(role)).json()["items"]
    one = app.get("/api/verification-queue/LAP-1", headers=bearer(role)).json()
    for seen in (monitored, one):
        assert "Oktovianus" not in seen["information_requested"]
        assert "Ndun" not in seen["information_requested"]
        assert "mohon kirim foto" in seen["information_requested"]
    [by_admin] = app.get("/api/verification-queue", params=params, headers=admin).json()["items"]
    assert by_admin["information_requested"] == asked


def test_the_queue_can_be_narrowed_to_a_region(app, admin):
    submit(app, "LAP-KUPANG", region_code="53.71.04")
    submit(app, "LAP-MALANG", region_code="35.73")
    page = app.get("/api/verification-queue", params={"region_code": "53.71"}, headers=admin).json()
    assert [item["tracking_id"] for item in page["items"]] == ["LAP-KUPANG"]


# -- decisions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/verification-queue", "/api/agencies"])
def test_an_offset_beyond_64_bits_is_a_validation_problem(app, admin, path):
    response = app.get(path, params={"offset": str(2**63)}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in response.json()["errors"]] == [["query", "offset"]]
    # The largest offset the database holds is a page past the end, not a failure.
    assert app.get(path, params={"offset": str(2**63 - 1)}, headers=admin).json()["items"] == []


@pytest.mark.parametrize("path", ["/api/verification-queue", "/api/agencies"])
@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("written", ["1_0", "+1", " 1", "1.0", "１", "1e1"])
def test_a_page_is_counted_in_decimal_digits(app, admin, path, name, written):
    """Only 0-9 make a count: pydantic's lax int would read "1_0" as 10 and "１" as 1."""
    response = app.get(path, params={name: written}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in response.json()["errors"]] == [["query", name]]
    assert app.get(path, params={name: "1"}, headers=admin).status_code == 200


def test_verification_answers_the_new_status_and_version(app, admin):
    submit(app, "LAP-1")
    response = post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur", "tags": ["jalan"]})
    assert response.status_code == 200
    assert response.json() == {"tracking_id": "LAP-1", "version": 1, "status": "verified",
                               "events": ["ComplaintVerified"]}
    assert response.headers["ETag"] == '"1"'
    [event] = app.app.state.context.store.read_stream("complaint-LAP-1", 1)
    assert event.metadata["actor"] == "admin_national"


def test_a_tag_given_twice_is_recorded_once(app, admin):
    """Each tag is kept once, in the order first given, as stripped (session 31: `["jalan", "jalan"]` was recorded
    twice, and the report listed it twice). Tags differing in case are different tags."""
    submit(app, "LAP-1")
    tags = ["jalan", "drainase", " jalan ", "Jalan", "drainase"]
    response = post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur", "tags": tags})
    assert response.status_code == 200, response.text
    [event] = app.app.state.context.store.read_stream("complaint-LAP-1", 1)
    assert event.data["tags"] == ["jalan", "drainase", "Jalan"]


@pytest.mark.parametrize("category", ["(none)", "(other)", "(Other)", " (none) ", '"(none)"', '""(other)""'])
def test_a_category_named_like_a_label_of_the_figures_is_refused_at_verification(app, admin, category):
    """Session 31: the reports' figures count reports without a category under `(none)` and the public statistics'
    rest under `(other)`; a verifier's category of that name was counted with them. The quoted forms are how the
    figures show such a name recorded before."""
    submit(app, "LAP-1")
    response = post(app, "LAP-1", "verify", admin, {"category": category})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["location"] == ["body", "category"]
    assert "give the category another name" in error["message"]
    assert app.app.state.context.store.stream_version("complaint-LAP-1") == 0
    # A name that only contains one is a name like any other.
    assert post(app, "LAP-1", "verify", admin, {"category": "Lainnya (other)"}).status_code == 200


def test_a_reporters_category_recorded_with_a_labels_name_is_no_default_at_verification(app, admin):
    submit(app, "LAP-1", category="(none)")  # recorded before session 31 refused it at submission
    response = post(app, "LAP-1", "verify", admin, {})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "give one" in response.json()["detail"]
    assert app.app.state.context.store.stream_version("complaint-LAP-1") == 0
    assert post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur"}).status_code == 200


@pytest.mark.parametrize(
    ("steps", "verb", "body", "event_type"),
    [
        ([("verify", {"category": "Kesehatan"})], "verify", {"category": "Kesehatan"}, "ComplaintVerified"),
        ([], "dispose", {"agency_id": KUPANG}, "ComplaintDisposed"),
        ([("verify", {"category": "Kesehatan"})], "archive", {"reason": "Bukan pengaduan"}, "ComplaintArchived"),
        ([("archive", {"reason": "Iklan"})], "verify", {"category": "Kesehatan"}, "ComplaintVerified"),
        ([("verify", {"category": "Kesehatan"})], "pend", {"information_requested": "Foto?"}, "ComplaintPended"),
        ([("mark-duplicate", {"duplicate_of": "LAP-0"})], "dispose", {}, "ComplaintDisposed"),
    ],
    ids=["verify twice", "dispose before verify", "archive after verify", "verify an archived report",
         "pend after verify", "dispose a duplicate"],
)
def test_an_illegal_decision_is_a_409_problem_and_changes_nothing(app, admin, steps, verb, body, event_type):
    submit(app, "LAP-0")
    submit(app, "LAP-1")
    for step, step_body in steps:
        assert post(app, "LAP-1", step, admin, step_body).status_code == 200
    version = len(app.app.state.context.store.read_stream("complaint-LAP-1"))
    response = post(app, "LAP-1", verb, admin, body)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["event_type"] == event_type
    assert len(app.app.state.context.store.read_stream("complaint-LAP-1")) == version


def test_a_decision_on_a_stale_version_is_refused_with_412(app, admin):
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Kesehatan"})
    response = post(app, "LAP-1", "dispose", {**admin, "If-Match": '"0"'}, {"agency_id": KUPANG})
    assert response.status_code == 412
    assert response.json()["current_version"] == 1
    assert post(app, "LAP-1", "dispose", {**admin, "If-Match": '"1"'}, {"agency_id": KUPANG}).status_code == 200


def test_a_write_between_the_commands_read_and_its_append_is_412_with_the_version_it_made(app, admin, monkeypatch):
    """The narrow race of `lapor.commands.run_command`: If-Match names the version the command reads, so it passes
    the check, and another admin's decision is committed before the command appends. The append's expected version
    is then stale: 412 naming the version the other write made (the client's view is stale; nothing is decided
    again for it), and nothing of the losing command is written."""
    submit(app, "LAP-1")
    ctx = app.app.state.context
    stream = "complaint-LAP-1"
    read_stream = ctx.store.read_stream
    other = Principal("admin-lain", Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)

    def read_then_another_admin_writes(name: str, *args: Any, **kwargs: Any) -> Any:
        events = read_stream(name, *args, **kwargs)
        if name == stream:
            monkeypatch.setattr(ctx.store, "read_stream", read_stream)  # once: the other admin's write reads too
            append_as(ctx, "LAP-1", other, ComplaintVerified(classification="pengaduan", category="Infrastruktur"))
        return events

    monkeypatch.setattr(ctx.store, "read_stream", read_then_another_admin_writes)
    response = post(app, "LAP-1", "verify", {**admin, "If-Match": '"0"'}, {"category": "Kesehatan"})
    assert response.status_code == 412, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["current_version"] == 1
    assert body["detail"] == f"{stream} changed while the command ran; it is now at version 1"
    events = ctx.store.read_stream(stream)
    assert [(event.type, event.metadata["actor"]) for event in events] == [
        ("ComplaintSubmitted", events[0].metadata["actor"]), ("ComplaintVerified", "admin-lain")]
    assert events[1].data["category"] == "Infrastruktur"


def test_an_unknown_report_is_404(app, admin):
    assert post(app, "LAP-NOPE", "verify", admin, {"category": "Kesehatan"}).status_code == 404


def test_disposing_without_an_agency_confirms_the_regional_government_of_the_place(app, admin):
    submit(app, "LAP-1", region_code="53.71.04.1002")
    post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur"})
    response = post(app, "LAP-1", "dispose", admin, {"note": "Jalan kota"})
    assert response.json()["status"] == "disposed"
    disposed = app.app.state.context.store.read_stream("complaint-LAP-1")[-1]
    assert (disposed.data["agency_id"], disposed.data["note"], disposed.data["rule_id"]) == (KUPANG, "Jalan kota", None)
    assert disposed.data["follow_up_due"] > disposed.recorded_at.isoformat()


def test_a_category_rule_routes_to_its_national_agency_and_the_disposition_records_the_rule(app, admin):
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Pertanahan"})
    [proposal, *_] = app.get("/api/verification-queue/LAP-1", headers=admin).json()["proposals"]
    assert (proposal["agency_id"], proposal["rule_id"]) == ("kementerian-agraria-dan-tata-ruang", "kategori-pertanahan")
    post(app, "LAP-1", "dispose", admin)
    disposed = app.app.state.context.store.read_stream("complaint-LAP-1")[-1]
    assert (disposed.data["agency_id"], disposed.data["rule_id"]) == (proposal["agency_id"], "kategori-pertanahan")


@pytest.mark.parametrize("agency_id", [f"{KUPANG}/dinkes", "pemda-99.99", "kementerian-tidak-ada"])
def test_a_disposition_goes_to_an_active_agency_not_a_unit_or_an_unknown_id(app, admin, agency_id):
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Kesehatan"})
    assert post(app, "LAP-1", "dispose", admin, {"agency_id": agency_id}).status_code == 422


def test_a_returned_report_comes_back_to_the_queue_with_the_reason_and_the_suggested_agency(app, admin):
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur"})
    post(app, "LAP-1", "dispose", admin, {"agency_id": KUPANG})
    returned_by(app, "LAP-1", KUPANG, suggested="pemda-53")
    [item] = app.get("/api/verification-queue", params={"status": "returned"}, headers=admin).json()["items"]
    assert (item["returned_from"], item["return_reason"]) == (KUPANG, "Jalan provinsi, bukan wewenang kota.")
    assert item["proposals"][0]["agency_id"] == "pemda-53"
    assert item["proposals"][0]["basis"] == "returned_suggestion"
    assert KUPANG not in [p["agency_id"] for p in item["proposals"]]
    assert post(app, "LAP-1", "dispose", admin).json()["status"] == "disposed"
    assert app.get("/api/verification-queue/LAP-1", headers=admin).json()["bounce_count"] == 1


def test_a_return_naming_another_agencys_office_proposes_that_agency_first(app, admin):
    """Kota Kupang returns the report naming Kota Malang's Dinas Kesehatan (an office of the directory, which
    followup accepts as the suggestion). An office takes no disposition, so the suggestion was dropped from the
    proposals, and `dispose` without an agency sent the report by the rules instead (session 29): the agency the
    office belongs to is proposed in its place."""
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Kesehatan"})
    post(app, "LAP-1", "dispose", admin, {"agency_id": KUPANG})
    returned_by(app, "LAP-1", KUPANG, suggested="pemda-35.73/dinkes")
    item = app.get("/api/verification-queue/LAP-1", headers=admin).json()
    assert item["suggested_agency_id"] == "pemda-35.73/dinkes"
    assert (item["proposals"][0]["agency_id"], item["proposals"][0]["basis"]) == ("pemda-35.73", "returned_suggestion")
    post(app, "LAP-1", "dispose", admin)
    assert app.app.state.context.store.read_stream("complaint-LAP-1")[-1].data["agency_id"] == "pemda-35.73"


def test_the_third_bounce_is_flagged_to_the_national_admin(app, admin):
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur"})
    holders = [KUPANG, "pemda-53", "pemda-53.01", "kementerian-pekerjaan-umum"]
    post(app, "LAP-1", "dispose", admin, {"agency_id": holders[0]})
    answers = []
    for previous, agency_id in itertools.pairwise(holders):
        returned_by(app, "LAP-1", previous)
        answers.append(post(app, "LAP-1", "dispose", admin, {"agency_id": agency_id}).json()["events"])
    assert answers == [["ComplaintDisposed"], ["ComplaintDisposed"], ["ComplaintDisposed", "ComplaintEscalated"]]
    flag = app.app.state.context.store.read_stream("complaint-LAP-1")[-1]
    assert (flag.data["kind"], flag.data["to_agency_id"]) == ("bounce_limit", "kemenpanrb")


def test_a_disposition_after_a_return_keeps_the_ombudsman_offer_deadline_of_the_first(serve, admin):
    """Sixty working days unresolved count from the first disposition (session 30): each disposition after a
    return started them again, and a report passed from agency to agency might never be offered to the Ombudsman."""
    with serve(training=True) as app:
        clock = app.app.state.context.clock
        clock.set(wib(2031, 6, 10, 9))
        submit(app, "LAP-1")
        post(app, "LAP-1", "verify", admin, {"category": "Infrastruktur"})
        assert post(app, "LAP-1", "dispose", admin, {"agency_id": KUPANG}).status_code == 200
        clock.set(wib(2031, 7, 8, 9))  # four weeks on, Kupang sends it back
        returned_by(app, "LAP-1", KUPANG, suggested="pemda-53")
        assert post(app, "LAP-1", "dispose", admin, {"agency_id": "pemda-53"}).status_code == 200
        disposals = [event.data for event in app.app.state.context.store.read_stream("complaint-LAP-1")
                     if event.type == "ComplaintDisposed"]
    assert [disposal["agency_id"] for disposal in disposals] == [KUPANG, "pemda-53"]
    assert disposals[1]["ombudsman_offer_due"] == disposals[0]["ombudsman_offer_due"]
    assert disposals[1]["follow_up_due"] > disposals[0]["follow_up_due"]  # the new holder's own follow-up


def test_a_report_is_marked_a_duplicate_of_an_existing_other_report(app, admin):
    submit(app, "LAP-1")
    submit(app, "LAP-2")
    assert post(app, "LAP-2", "mark-duplicate", admin, {"duplicate_of": "LAP-NONE"}).status_code == 409
    response = post(app, "LAP-2", "mark-duplicate", admin, {"duplicate_of": "LAP-1"})
    assert response.json()["status"] == "duplicate"
    assert app.get("/api/verification-queue", headers=admin).json()["total"] == 1


def test_two_reports_marked_as_each_others_duplicate_at_once_leave_one_standing(app, admin):
    """Each command reads the other report before its own append: without an order both became duplicates (each
    of the other) and the complaint was lost. The later report is the duplicate; the other command is refused."""
    submit(app, "LAP-1")
    submit(app, "LAP-2")
    barrier = Barrier(2)

    def mark(tracking_id: str, original: str) -> Any:
        barrier.wait()
        return post(app, tracking_id, "mark-duplicate", admin, {"duplicate_of": original})

    with ThreadPoolExecutor(2) as pool:
        refused, marked = pool.map(mark, ["LAP-1", "LAP-2"], ["LAP-2", "LAP-1"])
    assert (refused.status_code, marked.status_code) == (409, 200)
    # Refused for its order, or (had the other committed before it read) because LAP-2 is a duplicate by then.
    assert any(reason in refused.json()["detail"] for reason in ("LAP-2 came in after LAP-1", "LAP-2 is itself"))
    [standing] = app.get("/api/verification-queue", headers=admin).json()["items"]
    assert standing["tracking_id"] == "LAP-1"


def test_a_report_is_archived_with_its_reason(app, admin):
    submit(app, "LAP-1")
    assert post(app, "LAP-1", "archive", admin, {"reason": "Promosi produk"}).json()["status"] == "archived"
    assert app.app.state.context.store.read_stream("complaint-LAP-1")[-1].data["automatic"] is False


# -- the directory ------------------------------------------------------------------------------------------


def test_the_directory_lists_every_province_and_finds_agencies_by_name_region_and_keyword(app):
    assert app.get("/api/agencies", params={"kind": "pemerintah_provinsi"}).json()["total"] == 38
    named = app.get("/api/agencies", params={"q": "kota kupang", "limit": 1000}).json()["items"]
    assert KUPANG in [item["agency_id"] for item in named]
    within = app.get("/api/agencies", params={"region_code": "53.71", "kind": "unit"}).json()["items"]
    assert "Kecamatan Oebobo" in [item["name"] for item in within]
    [by_keyword] = app.get("/api/agencies", params={"keyword": "TANGKAB"}).json()["items"]
    assert by_keyword["agency_id"] == "pemda-36.03"


def test_an_agency_shows_its_opd_and_units(app):
    agency = app.get(f"/api/agencies/{KUPANG}").json()
    assert agency["parent_id"] == "pemda-53"
    assert f"{KUPANG}/dinkes" in [child["agency_id"] for child in agency["children"]]
    unit = app.get(f"/api/agencies/{KUPANG}/dinkes").json()
    assert unit["liaisons"][0]["position"].endswith("(data contoh)")
    assert app.get("/api/agencies/pemda-99").status_code == 404


def record(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Pemerintah Kota Kupang",
        "kind": "pemerintah_kabupaten_kota",
        "parent_id": "pemda-53",
        "region_code": "53.71",
        "sms_keywords": ["KOTKUPANG", "KUPANG"],
        "liaisons": [{"name": "Contoh Penghubung", "position": "Pejabat Penghubung (data contoh)"}],
    }
    body.update(changes)
    return body


def test_changing_an_agency_is_an_event_that_names_who_changed_it(app, admin):
    response = app.put(f"/api/agencies/{KUPANG}", json=record(), headers={**admin, "If-Match": '"0"'})
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    [updated] = app.app.state.context.store.read_stream(f"directory-{KUPANG}", 1)
    assert (updated.type, updated.metadata["actor"]) == ("AgencyUpdated", "admin_national")
    caught_up(app)
    assert app.get(f"/api/agencies/{KUPANG}").json()["sms_keywords"] == ["KOTKUPANG", "KUPANG"]
    head = app.app.state.context.store.head_position()
    stale = app.put(f"/api/agencies/{KUPANG}", json=record(name="Kota Kupang"), headers={**admin, "If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 1
    assert app.app.state.context.store.head_position() == head


def test_registering_an_agency_with_if_match_is_412_while_it_is_not_there(app, admin):
    """If-Match names a version of an agency there already: a registration sent with one, for an agency not there
    (a mistyped id), is 412 and registers nothing (session 31: If-Match was ignored and the agency was made).
    One there already is 409, as without If-Match."""
    unit = {"agency_id": f"{KUPANG}/rsud", "name": "RSUD Kota Kupang", "kind": "unit", "parent_id": f"{KUPANG}/dinkes"}
    head = app.app.state.context.store.head_position()
    response = app.post("/api/agencies", json=unit, headers={**admin, "If-Match": '"0"'})
    assert response.status_code == 412, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert app.app.state.context.store.head_position() == head
    assert app.app.state.context.store.read_stream(f"directory-{KUPANG}/rsud") == []
    registered = app.post("/api/agencies", json=unit, headers=admin)
    assert (registered.status_code, registered.headers["ETag"]) == (201, '"0"')
    assert app.post("/api/agencies", json=unit, headers={**admin, "If-Match": '"0"'}).status_code == 409


def test_an_agencys_keyword_or_liaison_given_twice_is_listed_once(app, admin):
    """An agency's SMS keywords and liaisons are kept once each, in the order first given (session 31: a keyword or
    a liaison given twice was listed twice in its record)."""
    liaison = {"name": "Contoh Penghubung", "position": "Pejabat Penghubung (data contoh)"}
    other = {"name": "Contoh Kedua", "position": None}
    body = record(sms_keywords=["KUPANG", "KOTKUPANG", "KUPANG"], liaisons=[liaison, other, liaison])
    response = app.put(f"/api/agencies/{KUPANG}", json=body, headers=admin)
    assert response.status_code == 200, response.text
    [updated] = app.app.state.context.store.read_stream(f"directory-{KUPANG}", 1)
    assert updated.data["sms_keywords"] == ["KUPANG", "KOTKUPANG"]
    assert [contact["name"] for contact in updated.data["liaisons"]] == ["Contoh Penghubung", "Contoh Kedua"]
    caught_up(app)
    assert app.get(f"/api/agencies/{KUPANG}").json()["sms_keywords"] == ["KUPANG", "KOTKUPANG"]


def test_a_keyword_in_use_cannot_be_given_to_another_agency(app, admin):
    response = app.put("/api/agencies/pemda-53.01", json=record(
        name="Pemerintah Kabupaten Kupang", region_code="53.01", sms_keywords=["KOTKUPANG"]), headers=admin)
    assert response.status_code == 409
    assert "KOTKUPANG" in response.json()["detail"]


def test_a_new_unit_is_registered_once_under_an_existing_parent(app, admin):
    unit = {"agency_id": f"{KUPANG}/rsud", "name": "RSUD Kota Kupang", "kind": "unit", "parent_id": f"{KUPANG}/dinkes"}
    assert app.post("/api/agencies", json=unit, headers=admin).status_code == 201
    assert app.post("/api/agencies", json=unit, headers=admin).status_code == 409
    orphan = {**unit, "agency_id": "pemda-53.71/uptd", "parent_id": "pemda-53.71/tidak-ada"}
    assert app.post("/api/agencies", json=orphan, headers=admin).status_code == 422
    caught_up(app)
    assert app.get(f"/api/agencies/{KUPANG}/rsud").json()["parent_id"] == f"{KUPANG}/dinkes"


def test_the_rules_streams_reserved_id_is_no_agency_to_change(app, admin):
    """`directory-routing-rules` is the rules' stream, not an agency's: PUT /api/agencies/routing-rules was a 500."""
    head = app.app.state.context.store.head_position()
    response = app.put("/api/agencies/routing-rules", json=record(name="Aturan"), headers=admin)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert app.app.state.context.store.head_position() == head


@pytest.mark.parametrize(("agency_id", "parent_id"), [
    (f"{KUPANG}/rsud", "pemda-35.73/dinkes"),  # a unit of Kota Kupang under Kota Malang's Dinas Kesehatan
    (f"{KUPANG}/rsud", "pemda-35.73"),
    ("pemda-53.99", f"{KUPANG}/dinkes"),  # an agency under another's office
])
def test_a_record_is_refused_a_parent_outside_the_agency_its_id_belongs_to(app, admin, agency_id, parent_id):
    """A unit's id names its agency (`lapor.auth` scopes by it), its parent_id only where it sits inside: a typo
    put a unit of Kota Kupang among Kota Malang's offices (`children`), where Malang's officers could not assign to
    it. Until session 29 it was registered; nothing is recorded now."""
    unit = {"agency_id": agency_id, "name": "RSUD Uji", "kind": "unit", "parent_id": parent_id}
    response = app.post("/api/agencies", json=unit, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert app.app.state.context.store.read_stream(f"directory-{agency_id}") == []
    existing = app.put(f"/api/agencies/{KUPANG}/dinkes", headers=admin, json={
        "name": "Dinas Kesehatan Kota Kupang", "kind": "perangkat_daerah", "parent_id": "pemda-35.73"})
    assert existing.status_code == 422, existing.text


@pytest.mark.parametrize("name", ["webhooks", "follow-up-approval"])
def test_a_unit_is_never_named_like_an_agencys_settings(app, admin, name):
    """/api/agencies/pemda-53.71/webhooks is Kota Kupang's webhooks (followup), so no unit may have that URL."""
    head = app.app.state.context.store.head_position()
    unit = {"agency_id": f"{KUPANG}/{name}", "name": "Unit Uji", "kind": "unit", "parent_id": KUPANG}
    response = app.post("/api/agencies", json=unit, headers=admin)
    assert response.status_code == 422, response.text
    assert name in response.json()["detail"]
    assert app.app.state.context.store.head_position() == head
    similar = {**unit, "agency_id": f"{KUPANG}/{name}-lama"}  # only the whole segment is taken
    assert app.post("/api/agencies", json=similar, headers=admin).status_code == 201
    caught_up(app)
    assert app.get(f"/api/agencies/{KUPANG}/{name}-lama").json()["name"] == "Unit Uji"


@pytest.mark.parametrize("name", [".", "..", ".hidden", "-x", "dinkes/..", "dinkes//x"])
def test_every_segment_of_a_units_id_starts_with_a_letter_or_digit(app, admin, name):
    """A unit `pemda-53.71/..` would be a path step in its URLs: clients resolve it to another address."""
    head = app.app.state.context.store.head_position()
    unit = {"agency_id": f"{KUPANG}/{name}", "name": "Unit Uji", "kind": "unit", "parent_id": KUPANG}
    response = app.post("/api/agencies", json=unit, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["location"] == ["body", "agency_id"]
    assert app.app.state.context.store.head_position() == head
    fixed = {**unit, "agency_id": f"{KUPANG}/x{name.replace('/', '')}"}  # "x..", "x-x": a letter first
    assert app.post("/api/agencies", json=fixed, headers=admin).status_code == 201


def test_a_retired_agency_takes_no_more_dispositions(app, admin):
    app.put("/api/agencies/pemda-53.01", json=record(name="Pemerintah Kabupaten Kupang", region_code="53.01",
                                                      sms_keywords=[], active=False), headers=admin)
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Kesehatan"})
    assert post(app, "LAP-1", "dispose", admin, {"agency_id": "pemda-53.01"}).status_code == 422


def test_the_units_of_a_retired_agency_can_still_be_retired(app, admin):
    """Session 32: once Kota Kupang was retired, PUT on its Dinas Kesehatan was 422 "parent pemda-53.71 is not an
    active agency", retiring it as well: its OPD and units stayed listed as active, their liaisons published, for
    good. A retired record needs its parent registered, not active; an active one still needs it active."""
    assert app.put(f"/api/agencies/{KUPANG}", json=record(active=False), headers=admin).status_code == 200
    dinkes = {"name": "Dinas Kesehatan Kota Kupang", "kind": "perangkat_daerah", "parent_id": KUPANG,
              "region_code": "53.71"}
    head = app.app.state.context.store.head_position()
    revived = app.put(f"/api/agencies/{KUPANG}/dinkes", json=dinkes, headers=admin)
    assert revived.status_code == 422, revived.text
    assert app.app.state.context.store.head_position() == head
    retired = app.put(f"/api/agencies/{KUPANG}/dinkes", json={**dinkes, "active": False}, headers=admin)
    assert retired.status_code == 200, retired.text
    typo = app.put(f"/api/agencies/{KUPANG}/dinkes", json={**dinkes, "parent_id": f"{KUPANG}/tidak-ada",
                                                           "active": False}, headers=admin)
    assert typo.status_code == 422, typo.text
    caught_up(app)
    listed = app.get("/api/agencies", params={"parent_id": KUPANG, "limit": 1000}).json()["items"]
    assert f"{KUPANG}/dinkes" not in [agency["agency_id"] for agency in listed]


def test_a_new_routing_rule_changes_the_proposal_and_records_its_author(app, admin):
    rule = {"match": {"region_code": "53.71", "category": "Kesehatan"}, "agency_id": "kementerian-kesehatan"}
    assert app.put("/api/routing-rules/kupang-kesehatan", json=rule, headers=admin).status_code == 200
    changed = app.app.state.context.store.read_stream(RULES_STREAM)[-1]
    assert (changed.type, changed.metadata["actor"]) == ("RoutingRuleChanged", "admin_national")
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "kesehatan"})
    [proposal, *_] = app.get("/api/verification-queue/LAP-1", headers=admin).json()["proposals"]
    assert (proposal["agency_id"], proposal["rule_id"]) == ("kementerian-kesehatan", "kupang-kesehatan")
    rules = {r["rule_id"]: r for r in app.get("/api/routing-rules", headers=admin).json()}
    assert rules["kupang-kesehatan"]["changed_by"] == "admin_national"


@pytest.mark.parametrize("category", ["<b>Kesehatan</b>", "Kes\x00ehatan", "\u200b", "(none)", '"(Other)"'])
def test_a_routing_rule_is_refused_a_category_no_report_could_have(app, admin, category):
    """A rule's category is matched against the category `verify` gives a report, which refuses markup, control
    characters, invisible text and the labels of the figures; a rule took them all until session 32 (published by
    GET /api/routing-rules, and never matching)."""
    head = app.app.state.context.store.head_position()
    rule = {"match": {"region_code": "53.71", "category": category}, "agency_id": KUPANG}
    response = app.put("/api/routing-rules/kupang-uji", json=rule, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["location"] == ["body", "match", "category"]
    assert app.app.state.context.store.head_position() == head


def test_a_routing_rule_change_with_a_stale_if_match_is_412_and_writes_nothing(app, admin):
    """Two national admins read the rule at one version; the first changes it, and the second's change from the same
    reading must not silently undo it. Until session 31 If-Match was ignored on this route and no version was shown.
    A rule's version is its own: another rule changed meanwhile does not make it stale."""
    path = "/api/routing-rules/kupang-kesehatan"
    rule = {"match": {"region_code": "53.71", "category": "Kesehatan"}, "agency_id": "kementerian-kesehatan"}
    created = app.put(path, json=rule, headers=admin)
    assert created.status_code == 200, created.text
    read = created.json()["version"]
    assert created.headers["ETag"] == f'"{read}"'
    caught_up(app)
    listed = {r["rule_id"]: r for r in app.get("/api/routing-rules", headers=admin).json()}
    assert listed["kupang-kesehatan"]["version"] == read
    other = {"match": {"region_code": "53.71", "category": "Pendidikan"}, "agency_id": "pemda-53.71"}
    assert app.put("/api/routing-rules/kupang-pendidikan", json=other, headers=admin).status_code == 200

    first = app.put(path, json={**rule, "agency_id": "pemda-53.71"}, headers={**admin, "If-Match": f'"{read}"'})
    assert first.status_code == 200, first.text
    head = app.app.state.context.store.head_position()
    second = app.put(path, json={**rule, "active": False}, headers={**admin, "If-Match": f'"{read}"'})
    assert second.status_code == 412, second.text
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["current_version"] == first.json()["version"]
    assert app.app.state.context.store.head_position() == head
    caught_up(app)
    listed = {r["rule_id"]: r for r in app.get("/api/routing-rules", headers=admin).json()}
    assert (listed["kupang-kesehatan"]["agency_id"], listed["kupang-kesehatan"]["active"]) == ("pemda-53.71", True)
    missing = app.put("/api/routing-rules/belum-ada", json=rule, headers={**admin, "If-Match": '"0"'})
    assert missing.status_code == 412, missing.text
    assert app.app.state.context.store.head_position() == head


def test_who_changed_a_routing_rule_is_told_to_staff_not_to_the_public(app, bearer):
    """The rules are public, but who changed one is an official's account name (a token's subject, such as
    "budi.santoso@menpan.go.id"): until session 27 the public read it."""
    rule = {"match": {"region_code": "53.71", "category": "Kesehatan"}, "agency_id": "kementerian-kesehatan"}
    admin = bearer(Role.admin_national, subject="budi.santoso@menpan.go.id", agency_id=NATIONAL_ADMIN_AGENCY)
    assert app.put("/api/routing-rules/kupang-kesehatan", json=rule, headers=admin).status_code == 200
    caught_up(app)
    for caller in ({}, bearer(Role.integration, channel="sms")):
        response = app.get("/api/routing-rules", headers=caller)
        assert "budi.santoso" not in response.text
        [shown] = [r for r in response.json() if r["rule_id"] == "kupang-kesehatan"]
        assert (shown["agency_id"], shown["changed_by"]) == ("kementerian-kesehatan", None)
    for staff in (admin, bearer(Role.auditor), bearer(Role.liaison, agency_id="pemda-53.71")):
        rules = {r["rule_id"]: r for r in app.get("/api/routing-rules", headers=staff).json()}
        assert rules["kupang-kesehatan"]["changed_by"] == "budi.santoso@menpan.go.id"


@pytest.mark.parametrize("flag", [0, 1, "yes", "true"])
def test_a_flag_that_is_not_true_or_false_is_refused_and_changes_nothing(app, admin, flag):
    """As intake's flags: lax validation read 0 as false and "yes" as true, which the document does not allow."""
    head = app.app.state.context.store.head_position()
    rule = {"match": {"category": "Kesehatan"}, "agency_id": "kementerian-kesehatan", "active": flag}
    for response in (
        app.put("/api/routing-rules/kesehatan", json=rule, headers=admin),
        app.put(f"/api/agencies/{KUPANG}", json={**record(), "active": flag}, headers=admin),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["location"] == ["body", "active"]
    assert app.app.state.context.store.head_position() == head


@pytest.mark.parametrize(
    "region",
    ["５３.７１", "٥٣.٧١", "53.٧١", "99.99", "53.99", "53.71\n"],
    ids=["fullwidth digits", "Arabic-Indic digits", "mixed digits", "no such province", "no such city", "newline"],
)
def test_an_agency_or_a_rule_is_placed_only_in_a_region_that_exists(app, admin, region):
    """pydantic's `\\d` took any script's digits, so an agency could be registered in "５３.７１", which the
    published contract (ECMA-262, ASCII digits) calls invalid and no report's region ever equals; and a code no
    Kemendagri region has was taken too. Both are refused with the field named, and nothing is appended."""
    head = app.app.state.context.store.head_position()
    new_unit = {"agency_id": f"{KUPANG}/uji", "name": "Dinas Uji", "kind": "perangkat_daerah",
                "parent_id": KUPANG, "region_code": region}
    rule = {"match": {"region_code": region}, "agency_id": "kementerian-kesehatan"}
    for response, location in (
        (app.post("/api/agencies", json=new_unit, headers=admin), ["body", "region_code"]),
        (app.put(f"/api/agencies/{KUPANG}", json=record(region_code=region), headers=admin), ["body", "region_code"]),
        (app.put("/api/routing-rules/uji", json=rule, headers=admin), ["body", "match", "region_code"]),
    ):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["location"] == location
    assert app.app.state.context.store.head_position() == head
    for listing in ("/api/agencies", "/api/verification-queue"):  # a filter names any well-formed code
        response = app.get(listing, params={"region_code": region}, headers=admin)
        # A control character in a URL is refused before any route (400); other malformed codes are the route's 422.
        expected = 400 if "\n" in region else 200 if region.isascii() else 422
        assert response.status_code == expected, listing


def test_an_agency_and_a_rule_in_a_real_region_are_taken(app, admin):
    unit = {"agency_id": f"{KUPANG}/uji", "name": "Dinas Uji", "kind": "perangkat_daerah", "parent_id": KUPANG,
            "region_code": "53.71.04"}
    registered = app.post("/api/agencies", json=unit, headers=admin)
    assert registered.status_code == 201, registered.text
    rule = {"match": {"region_code": "53.71.04"}, "agency_id": "kementerian-kesehatan"}
    assert app.put("/api/routing-rules/uji", json=rule, headers=admin).status_code == 200
    caught_up(app)
    assert app.get(f"/api/agencies/{KUPANG}/uji").json()["region_code"] == "53.71.04"
    rules = {r["rule_id"]: r for r in app.get("/api/routing-rules").json()}
    assert rules["uji"]["match"]["region_code"] == "53.71.04"


@pytest.mark.parametrize(
    ("verb", "body"),
    [
        ("archive", {"reason": "Spam <script>alert(1)</script>"}),
        ("pend", {"information_requested": "Lampirkan foto\x00lokasi."}),
        ("verify", {"category": "Kese\x1bhatan"}),
        ("verify", {"category": "Kesehatan", "tags": ["<b>mendesak</b>"]}),
        ("verify", {"category": "Kesehatan", "title": "<i>Judul</i> baru"}),
    ],
    ids=["reason", "information requested", "category", "tag", "title"],
)
def test_what_the_routing_desk_writes_is_plain_text(app, admin, verb, body):
    """A reason, a category, a tag or a corrected title is shown to reporters and agencies: plain text, as a
    reporter's own report is (`lapor.limits.check_plain_text`). Refused with the field named; nothing appended."""
    submit(app, "LAP-PLAIN")
    head = app.app.state.context.store.head_position()
    response = post(app, "LAP-PLAIN", verb, admin, body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["location"][0] == "body"
    assert app.app.state.context.store.head_position() == head


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"name": "Pemkot <b>Kupang</b>"}, ["body", "name"]),
        ({"liaisons": [{"name": "Contoh <img src=x onerror='alert(1)'>"}]}, ["body", "liaisons", "0", "name"]),
        ({"liaisons": [{"name": "Contoh", "position": "Kepala\x07Bagian"}]}, ["body", "liaisons", "0", "position"]),
    ],
    ids=["agency name", "liaison name", "liaison position"],
)
def test_what_an_agency_publishes_is_plain_text(app, admin, changes, location):
    """An agency's name and its liaisons' names and positions are shown to every reporter."""
    head = app.app.state.context.store.head_position()
    response = app.put(f"/api/agencies/{KUPANG}", json=record(**changes), headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"] == location
    assert app.app.state.context.store.head_position() == head


def test_a_rule_must_route_to_an_agency_that_takes_dispositions(app, admin):
    rule = {"match": {"category": "Kesehatan"}, "agency_id": f"{KUPANG}/dinkes"}
    assert app.put("/api/routing-rules/ke-dinkes", json=rule, headers=admin).status_code == 422


def test_a_unit_of_an_assigned_report_is_not_routings_business(app, admin):
    """Routing's queue shows a report until an agency holds it; followup's assignment does not bring it back."""
    submit(app, "LAP-1")
    post(app, "LAP-1", "verify", admin, {"category": "Kesehatan"})
    post(app, "LAP-1", "dispose", admin, {"agency_id": KUPANG})
    append_as(app.app.state.context, "LAP-1", agency_principal(KUPANG), DispositionAccepted(agency_id=KUPANG),
              ComplaintAssigned(unit_id=f"{KUPANG}/dinkes"))
    caught_up(app)
    assert app.get("/api/verification-queue", headers=admin).json()["total"] == 0
