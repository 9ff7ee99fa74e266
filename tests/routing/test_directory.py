"""The shipped directory: every province and regency/city of Kepmendagri 300.2.2-2138/2025 with its code, unique
ids and SMS keywords, the seed regions' OPD and units, sample liaisons marked as such, and seeding that happens
once however often (or however concurrently) the service starts."""

from __future__ import annotations

import re
import threading
from collections import Counter

from lokal.wilayah import list_wilayah

from lapor.commands import run_command
from lapor.context import ServiceContext
from lapor.directory import agency_stream
from lapor.settings import load_settings
from lapor.store import open_store
from schemas.events import AgencyKind, AgencyRegistered
from services.routing.directory import RULES_STREAM, fold_agency, read_agency, shipped_agencies, shipped_rules
from services.routing.keywords import claim_keywords
from services.routing.projections import keyword_owners, setup_directory
from tests.routing.harness import ADMIN, Routing, wib

AGENCIES = {agency.agency_id: agency for agency in shipped_agencies()}
START = wib(2026, 3, 2)


def test_every_one_of_the_38_provinces_is_an_agency_keyed_by_its_kemendagri_code():
    provinces = [a for a in AGENCIES.values() if a.kind is AgencyKind.pemerintah_provinsi]
    assert len(provinces) == 38
    assert {a.agency_id for a in provinces} == {f"pemda-{p.code}" for p in list_wilayah()}
    assert all(a.region_code == a.agency_id.removeprefix("pemda-") for a in provinces)


def test_every_one_of_the_514_regencies_and_cities_is_an_agency_under_its_province():
    regencies = [a for a in AGENCIES.values() if a.kind is AgencyKind.pemerintah_kabupaten_kota]
    assert len(regencies) == 514  # 416 kabupaten and 98 kota
    expected = {f"pemda-{r.code}" for p in list_wilayah() for r in list_wilayah(p.code)}
    assert {a.agency_id for a in regencies} == expected
    assert all(a.parent_id == "pemda-" + a.region_code.split(".")[0] for a in regencies)
    assert len({a.region_code for a in regencies}) == 514


def test_the_cities_of_the_issue_carry_their_names():
    assert AGENCIES["pemda-82.71"].name == "Pemerintah Kota Ternate"
    assert AGENCIES["pemda-53.71"].name == "Pemerintah Kota Kupang"
    assert AGENCIES["pemda-81.71"].name == "Pemerintah Kota Ambon"
    assert AGENCIES["pemda-35"].name == "Pemerintah Provinsi Jawa Timur"
    assert AGENCIES["pemda-35.73"].name == "Pemerintah Kota Malang"


def test_national_nodes_are_there():
    assert {"kemenpanrb", "ksp", "ombudsman-ri"} <= AGENCIES.keys()
    assert sum(a.kind is AgencyKind.kementerian for a in AGENCIES.values()) >= 30


def test_seed_regions_have_their_opd_and_kecamatan_as_children():
    assert AGENCIES["pemda-53.71/dinkes"].parent_id == "pemda-53.71"
    assert AGENCIES["pemda-53.71/disdik"].kind is AgencyKind.perangkat_daerah
    kecamatan = [a for a in AGENCIES.values() if a.parent_id == "pemda-53.71" and a.kind is AgencyKind.unit]
    assert {a.name for a in kecamatan} >= {"Kecamatan Alak", "Kecamatan Oebobo", "Kecamatan Kelapa Lima"}
    assert AGENCIES["pemda-53.71/puskesmas-oepoi"].parent_id == "pemda-53.71/dinkes"
    for city in ("82.71", "81.71", "35.73", "36.03"):
        assert f"pemda-{city}/dinkes" in AGENCIES


def test_every_sms_keyword_names_exactly_one_agency():
    keywords = Counter(word for agency in AGENCIES.values() for word in agency.sms_keywords)
    assert [word for word, count in keywords.items() if count > 1] == []
    assert all(re.fullmatch(r"[A-Z0-9]{2,20}", word) for word in keywords)


def test_keywords_of_the_design_and_every_region_has_one():
    owner = {word: agency.agency_id for agency in AGENCIES.values() for word in agency.sms_keywords}
    assert owner["KOTKUPANG"] == "pemda-53.71"
    assert owner["TANGKAB"] == "pemda-36.03"
    assert owner["KABTANGERANG"] == "pemda-36.03"
    assert owner["JATIM"] == "pemda-35"
    regions = [a for a in AGENCIES.values() if a.agency_id.startswith("pemda-") and "/" not in a.agency_id]
    assert all(agency.sms_keywords for agency in regions)


def test_liaison_contacts_are_marked_as_fictional_sample_data():
    contacts = [contact for agency in AGENCIES.values() for contact in agency.liaisons]
    assert contacts
    assert all("data contoh" in (contact.position or "") for contact in contacts)
    assert all(contact.email is None or contact.email.endswith(".example") for contact in contacts)


def test_rules_route_to_agencies_that_exist():
    assert all(rule.agency_id in AGENCIES for rule in shipped_rules())


def test_seeding_registers_each_agency_once_however_often_the_service_starts(tmp_path):
    first = Routing(tmp_path / "var", START)
    head = first.store.head_position()
    first.close()
    again = Routing(tmp_path / "var", START)
    try:
        assert again.store.head_position() == head
        assert len(again.store.read_stream("directory-pemda-53.71")) == 1
        assert len(again.store.read_stream(RULES_STREAM)) == len(shipped_rules())
    finally:
        again.close()


def test_two_services_starting_together_on_one_store_register_each_agency_once(tmp_path):
    data = tmp_path / "var"
    started: list[Routing] = []
    threads = [threading.Thread(target=lambda: started.append(Routing(data, START))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for harness in started:
        harness.close()
    assert len(started) == 2, "both services must start (neither may fail on the other's lock)"
    with open_store(f"sqlite:///{data / 'events.db'}") as store:
        streams = Counter(event.stream for event in store.read_all(0, "directory", 100_000))
    assert len(streams) == len(AGENCIES) + 1
    assert set(streams.values()) == {1} | {len(shipped_rules())}
    assert streams[RULES_STREAM] == len(shipped_rules())


def test_an_agency_shipped_after_another_claimed_its_keyword_is_registered_without_it(tmp_path, caplog):
    """A later version ships an agency (an upgrade of lokal-id) whose keyword an admin gave another agency meanwhile.
    Until session 32 the seed registered it with the keyword: both agencies listed it, and the read models (the SMS
    channel's too) sent it to the one registered last, the shipped one."""
    data = tmp_path / "var"
    ctx = ServiceContext.open(load_settings(data=data))
    with ctx.db.transaction() as tx:
        setup_directory(tx)  # the read models the API runs with
    try:  # what POST /api/agencies does: claim, then register
        claim_keywords(ctx, "kupang-baru", ["KOTKUPANG"], 0, ADMIN)
        record = AgencyRegistered(agency_id="kupang-baru", name="Kota Kupang Baru", kind=AgencyKind.lainnya,
                                  sms_keywords=("KOTKUPANG",))
        run_command(ctx, agency_stream("kupang-baru"), lambda agency, now: [record.to_new_event()], principal=ADMIN,
                    fold=fold_agency, must_exist=False)
    finally:
        ctx.close()
    routing = Routing(data, START)
    try:
        kupang = read_agency(routing.store, "pemda-53.71")
        assert kupang is not None
        assert "KOTKUPANG" not in kupang.sms_keywords
        with routing.ctx.db.read() as tx:
            assert keyword_owners(tx, ["KOTKUPANG"]) == {"KOTKUPANG": "kupang-baru"}
        assert "pemda-53.71 registered without SMS keyword(s) KOTKUPANG (kupang-baru)" in caplog.text
    finally:
        routing.close()
