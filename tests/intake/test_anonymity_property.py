"""Property: whatever an anonymous reporter gives as identity, and however they repeat it in the text, neither the
public view nor the view of the agency handling the report contains it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapor.principal import Role
from tests.intake.conftest import REPORT

FIRST = ("Yohanes", "Maria", "Siti", "Budi", "Agustina", "Rahmat", "Fransiska", "Ahmad", "Dewi", "Marthen")
LAST = ("Bessie", "Rahayu", "Santoso", "Manafe", "Tuasikal", "Wijaya", "Ndun", "Hidayat", "Pello", "Latuconsina")
PREFIXES = ("0812", "0813", "0821", "0852", "0856", "0878", "0896", "0838", "0881")

names = st.tuples(st.sampled_from(FIRST), st.sampled_from(LAST)).map(" ".join)
phones = st.tuples(st.sampled_from(PREFIXES), st.integers(10_000_000, 99_999_999)).map(lambda p: f"{p[0]}{p[1]}")
niks = st.tuples(
    st.sampled_from(("5371", "8271", "3573", "3603")),
    st.integers(1, 9),
    st.integers(1, 28),
    st.booleans(),
    st.integers(1, 12),
    st.integers(60, 99),
    st.integers(1, 9999),
).map(lambda n: f"{n[0]}{n[1]:02d}{n[2] + (40 if n[3] else 0):02d}{n[4]:02d}{n[5]:02d}{n[6]:04d}")
emails = st.tuples(st.sampled_from(("warga", "pelapor", "kupang.bersih")), st.integers(1, 999)).map(
    lambda e: f"{e[0]}{e[1]}@mail.example.id"
)


def phone_forms(phone: str) -> st.SearchStrategy[str]:
    rest = phone[1:]
    return st.sampled_from((phone, f"+62{rest}", f"62{rest}", f"{phone[:4]}-{phone[4:8]}-{phone[8:]}"))


@st.composite
def anonymous_reports(draw):
    identity = {"name": draw(names), "phone": draw(phones), "nik": draw(niks), "email": draw(emails)}
    mentions = [
        draw(st.sampled_from(("Saya {name}.", "Nama saya {name}.", "{name} melapor.", "Pelapor: {name}."))),
        draw(st.sampled_from(("Hubungi {phone}.", "HP/WA {phone}", "no. telp {phone}"))),
        draw(st.sampled_from(("NIK {nik}", "NIK saya {nik}.", "KTP {nik}"))),
        draw(st.sampled_from(("email {email}", "surel: {email}."))),
    ]
    written = {**identity, "phone": draw(phone_forms(identity["phone"]))}
    chosen = draw(st.lists(st.sampled_from(mentions), min_size=1, max_size=4, unique=True))
    body = REPORT["body"] + " " + " ".join(m.format(**written) for m in chosen)
    title = draw(
        st.sampled_from((REPORT["title"], f"Laporan {identity['name']}", f"Jalan rusak, hubungi {written['phone']}"))
    )
    return identity, {**REPORT, "title": title, "body": body, "anonymous": True, "reporter": identity}


def traces(identity: dict[str, str]) -> list[str]:
    """What would give the reporter away: each part of the name, the phone's last eight digits, the NIK, the
    e-mail's local part, and any vault reference."""
    return [*identity["name"].split(), identity["phone"][-8:], identity["nik"], identity["email"].split("@")[0], "pii_"]


@pytest.fixture
def intake(module_intake):
    return module_intake


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(anonymous_reports())
def test_public_and_agency_views_never_contain_an_anonymous_reporters_identity(intake, report):
    identity, body = report
    response = intake.client.post("/api/complaints", json=body)
    assert response.status_code == 201, response.text
    tracking_id = response.json()["tracking_id"]
    intake.dispose(tracking_id, "pemda-53.71")
    views = {
        "public": intake.client.get(f"/api/complaints/{tracking_id}"),
        "agency": intake.client.get(
            f"/api/complaints/{tracking_id}", headers=intake.bearer(Role.admin_agency, agency_id="pemda-53.71")
        ),
    }
    for audience, view in views.items():
        assert view.status_code == 200
        for trace in traces(identity):
            assert trace.lower() not in view.text.lower(), f"{audience} view shows {trace!r}: {view.text}"
