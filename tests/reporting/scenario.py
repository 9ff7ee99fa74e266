"""A hand-built month of thirty reports whose figures are known by hand (see test_national_view.py).

Every event happens at 09:00 WIB (02:00 UTC) of a day counted from DAY0, so each figure is a whole number of
days. The deadlines are written into the events explicitly (not from the calendar), so the expected answers can
be checked with a pencil. The reports sit in 2090 because the app's training clock starts at the real time and
only moves forward.

Groups (n reports each; region; channel): story by day.
- G1 (6; 53.71 Kupang; web): submitted 0, verified 1 (due 3), disposed to Kupang 1 (due 6), accepted 2,
  follow-up 3, resolved 5, satisfied and closed 6.
- G2 (4; 53.71; web): submitted 0, verified 5 (late), disposed to Kupang 5 (due 10), accepted 6, no follow-up;
  the first one escalated for the missed follow-up 11, to the province (new due 16).
- G3 (5; 35.73 Malang; mobile): submitted 2, verified 3 (due 5), disposed to Malang 3, returned 4 (bukan
  wewenang), disposed to Jawa Timur 4 (due 9), accepted 5, assigned to pemda-35/dinkes 5, follow-up 7.
- G4 (3; 35.73; web): submitted 10 (due 13), nothing since.
- G5 (2; 53.71; web): submitted 1 (due 4), pended 2, archived 15.
- G6 (2; 53.71; web): submitted 18 (due 21), nothing since.
- G7 (1; 35.73, confidential; web): submitted 0, verified 1, disposed to Malang 1 (due 6), accepted 2, internal
  note 3, follow-up 8 (late), resolved 9, unhappy 10, reopened 10 (due 15).
- G8 (7; 53.71; sms, aspirasi): submitted 12 (due 15), verified 12, disposed to Kupang 13 (due 18), accepted 13,
  assigned to pemda-53.71/dinkes 13, follow-up 14, resolved 16, closed without an answer 19.

"Now" is day 20.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lapor.clock import ManualClock
from lapor.store import EventStore, NewEvent
from schemas import events as ev

DAY0 = datetime(2090, 3, 6, 2, 0, tzinfo=UTC)
NOW_DAY = 20
KUPANG, MALANG, JATIM, NTT = "pemda-53.71", "pemda-35.73", "pemda-35", "pemda-53"
CONFIDENTIAL_ID = "LAP-G7-01"
CONFIDENTIAL_TITLE = "Pungutan liar di ruang rawat inap"
TOKEN_HASH = "b" * 64


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


OFFICER = {"actor": "admin-nasional-1", "role": "admin_national", "agency": "kemenpanrb"}
SYSTEM = {"actor": "system", "role": "admin_national", "agency": "kemenpanrb"}


def staff(agency_id: str) -> dict[str, str]:
    return {"actor": f"liaison-{agency_id}", "role": "liaison", "agency": agency_id}


def reporter(tracking_id: str) -> dict[str, str]:
    return {"actor": f"reporter:{tracking_id}", "role": "reporter"}


@dataclass
class Report:
    tracking_id: str
    steps: list[tuple[datetime, ev.EventData, dict[str, str]]] = field(default_factory=list)

    def at(self, n: float, model: ev.EventData, metadata: dict[str, str]) -> Report:
        self.steps.append((day(n), model, metadata))
        return self


def submitted(
    tracking_id: str, n: float, region: str, *, kind: str = "pengaduan", channel: str = "web",
    category: str | None = None, confidential: bool = False, title: str = "Laporan warga",
) -> Report:
    return Report(tracking_id).at(n, ev.ComplaintSubmitted(
        tracking_id=tracking_id, kind=kind, title=title, body="Mohon segera ditindaklanjuti.",
        category=category, region_code=region, channel=channel,
        channel_ref=f"sms-{tracking_id}" if channel == "sms" else None, confidential=confidential,
        reporter_ref=f"pii_{tracking_id.replace('-', '_')}x", reporter_token_hash=TOKEN_HASH,
        verification_due=day(n + 3),
    ), {"actor": f"reporter:{tracking_id}", "role": "reporter"})


def verified(report: Report, n: float, kind: str, category: str) -> Report:
    return report.at(n, ev.ComplaintVerified(classification=kind, category=category), OFFICER)


def disposed(report: Report, n: float, agency_id: str, due: float) -> Report:
    return report.at(n, ev.ComplaintDisposed(agency_id=agency_id, follow_up_due=day(due),
                                             ombudsman_offer_due=day(n + 80)), OFFICER)


def accepted(report: Report, n: float, agency_id: str) -> Report:
    return report.at(n, ev.DispositionAccepted(agency_id=agency_id), staff(agency_id))


def held(tracking_id: str, region: str, agency_id: str = KUPANG) -> Report:
    """Submitted on day 0, verified and disposed to `agency_id` on day 1 (follow-up due day 6), accepted on day 2."""
    return accepted(disposed(verified(submitted(tracking_id, 0, region), 1, "pengaduan", "kesehatan"), 1, agency_id,
                             6), 2, agency_id)


def red_mark(report: Report, n: float, from_level: str, to_level: str, to_agency_id: str, due: float) -> Report:
    """Routing's escalation for a missed follow-up deadline (nilai merah), with the next level's deadline `due`."""
    return report.at(n, ev.ComplaintEscalated(kind="follow_up_overdue", reason="Tidak ada tindak lanjut.",
                                              from_level=from_level, to_level=to_level, to_agency_id=to_agency_id,
                                              automatic=True, follow_up_due=day(due)), SYSTEM)


def follow_up(report: Report, n: float, agency_id: str, *, public: bool = True) -> Report:
    number = sum(1 for _, model, _ in report.steps if isinstance(model, ev.FollowUpPosted))
    return report.at(n, ev.FollowUpPosted(follow_up_id=f"fu-{number}", text="Sudah ditangani.", public=public),
                     staff(agency_id))


def g1(i: int) -> Report:
    r = verified(submitted(f"LAP-G1-{i:02d}", 0, "53.71", category="infrastruktur"), 1, "pengaduan", "infrastruktur")
    disposed(r, 1, KUPANG, 6)
    accepted(r, 2, KUPANG)
    follow_up(r, 3, KUPANG)
    r.at(5, ev.ComplaintResolved(resolution="Sudah diperbaiki.", feedback_due=day(15)), staff(KUPANG))
    r.at(6, ev.FeedbackGiven(satisfied=True, rating=5), {"actor": f"reporter:{r.tracking_id}", "role": "reporter"})
    return r.at(6, ev.ComplaintClosed(reason="satisfied"), SYSTEM)


def g2(i: int) -> Report:
    r = verified(submitted(f"LAP-G2-{i:02d}", 0, "53.71"), 5, "pengaduan", "kesehatan")
    disposed(r, 5, KUPANG, 10)
    accepted(r, 6, KUPANG)
    if i == 1:
        r.at(11, ev.ComplaintEscalated(kind="follow_up_overdue", reason="Tidak ada tindak lanjut 5 hari kerja.",
                                       from_level="agency", to_level="regional", to_agency_id=NTT, automatic=True,
                                       follow_up_due=day(16)), SYSTEM)
    return r


def g3(i: int) -> Report:
    r = verified(submitted(f"LAP-G3-{i:02d}", 2, "35.73", channel="mobile"), 3, "pengaduan", "pendidikan")
    disposed(r, 3, MALANG, 8)
    r.at(4, ev.DispositionReturned(agency_id=MALANG, reason="Kewenangan provinsi (SMA).", suggested_agency_id=JATIM),
         staff(MALANG))
    disposed(r, 4, JATIM, 9)
    accepted(r, 5, JATIM)
    r.at(5, ev.ComplaintAssigned(unit_id=f"{JATIM}/dinkes"), staff(JATIM))
    return follow_up(r, 7, JATIM)


def g4(i: int) -> Report:
    return submitted(f"LAP-G4-{i:02d}", 10, "35.73", category="lingkungan")


def g5(i: int) -> Report:
    r = submitted(f"LAP-G5-{i:02d}", 1, "53.71")
    r.at(2, ev.ComplaintPended(information_requested="Di mana lokasinya?", archive_due=day(14)), OFFICER)
    return r.at(15, ev.ComplaintArchived(reason="Tidak ada jawaban pelapor.", automatic=True), SYSTEM)


def g6(i: int) -> Report:
    return submitted(f"LAP-G6-{i:02d}", 18, "53.71")


def g7(i: int) -> Report:
    r = submitted(CONFIDENTIAL_ID, 0, "35.73", confidential=True, title=CONFIDENTIAL_TITLE)
    verified(r, 1, "pengaduan", "kesehatan")
    disposed(r, 1, MALANG, 6)
    accepted(r, 2, MALANG)
    follow_up(r, 3, MALANG, public=False)
    follow_up(r, 8, MALANG)
    r.at(9, ev.ComplaintResolved(resolution="Petugas sudah ditegur.", feedback_due=day(19)), staff(MALANG))
    r.at(10, ev.FeedbackGiven(satisfied=False, rating=1), {"actor": f"reporter:{CONFIDENTIAL_ID}", "role": "reporter"})
    return r.at(10, ev.ComplaintReopened(reason="Masih terjadi.", follow_up_due=day(15)), SYSTEM)


def g8(i: int) -> Report:
    r = verified(submitted(f"LAP-G8-{i:02d}", 12, "53.71", kind="aspirasi", channel="sms"), 12, "aspirasi",
                 "infrastruktur")
    disposed(r, 13, KUPANG, 18)
    accepted(r, 13, KUPANG)
    r.at(13, ev.ComplaintAssigned(unit_id=f"{KUPANG}/dinkes"), staff(KUPANG))
    follow_up(r, 14, KUPANG)
    r.at(16, ev.ComplaintResolved(resolution="Usulan ditampung.", feedback_due=day(18.5)), staff(KUPANG))
    return r.at(19, ev.ComplaintClosed(reason="no_response"), SYSTEM)


GROUPS: list[tuple[Callable[[int], Report], int]] = [(g1, 6), (g2, 4), (g3, 5), (g4, 3), (g5, 2), (g6, 2), (g7, 1),
                                                     (g8, 7)]


def reports() -> list[Report]:
    return [build(i) for build, count in GROUPS for i in range(1, count + 1)]


def directory() -> list[tuple[str, NewEvent]]:
    agencies = [
        (KUPANG, "Pemerintah Kota Kupang", NTT, "pemerintah_kabupaten_kota", "53.71"),
        (MALANG, "Pemerintah Kota Malang", JATIM, "pemerintah_kabupaten_kota", "35.73"),
        (JATIM, "Pemerintah Provinsi Jawa Timur", None, "pemerintah_provinsi", "35"),
        (NTT, "Pemerintah Provinsi Nusa Tenggara Timur", None, "pemerintah_provinsi", "53"),
        (f"{KUPANG}/dinkes", "Dinas Kesehatan Kota Kupang", KUPANG, "perangkat_daerah", "53.71"),
        (f"{JATIM}/dinkes", "Dinas Kesehatan Provinsi Jawa Timur", JATIM, "perangkat_daerah", "35"),
    ]
    return [
        (f"directory-{agency_id}", ev.AgencyRegistered(agency_id=agency_id, name=name, parent_id=parent, kind=kind,
                                                       region_code=region).to_new_event(metadata=dict(SYSTEM)))
        for agency_id, name, parent, kind, region in agencies
    ]


def play(store: EventStore, clock: ManualClock, played: Sequence[Report] | None = None,
         now: datetime | None = None, *, settle: Callable[[], None] | None = None, every: int = 1) -> None:
    """Append the directory, then every report's events (the month's unless `played` are given) in time order,
    each at its moment; leave the clock at `now` (day NOW_DAY unless given). With `settle`, call it after every
    `every` appends (to let the projections catch up, so their batches end inside the histories)."""
    clock.set(day(-1))
    for stream, event in directory():
        store.append(stream, [event])
    timeline = sorted(
        ((moment, report.tracking_id, number, model, metadata)
         for report in (reports() if played is None else played)
         for number, (moment, model, metadata) in enumerate(report.steps)),
        key=lambda step: (step[0], step[1], step[2]),
    )
    for appended, (moment, tracking_id, number, model, metadata) in enumerate(timeline, 1):
        if moment > clock.now():
            clock.set(moment)
        store.append(f"complaint-{tracking_id}", [model.to_new_event(metadata=metadata)], expected_version=number - 1)
        if settle is not None and appended % every == 0:
            settle()
    clock.set(day(NOW_DAY) if now is None else now)
