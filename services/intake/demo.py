"""Demo data (`lapor up --demo`): a few hundred realistic reports across the seed cities, through the same
`submit` every channel uses. Names, numbers and NIKs are fictional (NIKs only have a valid structure).

Deterministic and idempotent: report n is submitted under the natural key `demo:<n>`, so running the demo again
on the same data adds nothing. SMS reports carry the agency their keyword names, as the SMS channel would once
routing's directory is loaded (the demo runs before routing seeds it).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lapor.context import ServiceContext
from lapor.principal import Principal, Role
from schemas.events import Channel, ComplaintKind
from services.intake.decide import SubmitComplaint
from services.intake.idempotency import IdDerivation
from services.intake.sms import title_of
from services.intake.submit import Report, submit

DEMO_REPORTS = 300
_SEED = 1708


@dataclass(frozen=True)
class City:
    region_code: str
    name: str
    places: tuple[str, ...]


CITIES = (
    City(
        "53.71",
        "Kota Kupang",
        ("Jl. El Tari", "Kelurahan Oebobo", "Pasar Kasih Naikoten", "Kelurahan Fatululi", "Jl. Timor Raya"),
    ),
    City(
        "82.71", "Kota Ternate", ("Jl. Sultan Babullah", "Kelurahan Kalumpang", "Pasar Gamalama", "Kelurahan Bastiong")
    ),
    City("81.71", "Kota Ambon", ("Jl. Sultan Hairun", "Kelurahan Batu Merah", "Pasar Mardika", "Kelurahan Benteng")),
    City("35.73", "Kota Malang", ("Jl. Soekarno-Hatta", "Kelurahan Lowokwaru", "Pasar Besar", "Kelurahan Sawojajar")),
    City(
        "35", "Provinsi Jawa Timur", ("jalan provinsi Malang–Kediri", "Samsat Surabaya Timur", "SMA negeri di Sidoarjo")
    ),
    City("36.03", "Kabupaten Tangerang", ("Jl. Raya Serang", "Kecamatan Cikupa", "Pasar Kutabumi", "Desa Pasir Jaya")),
    City("36.71", "Kota Tangerang", ("Jl. MH Thamrin", "Kelurahan Cikokol", "Kecamatan Ciledug")),
)

# (kind, category, title, body): {place} and {months} are filled in.
TOPICS = (
    (
        ComplaintKind.pengaduan,
        "Infrastruktur",
        "Jalan rusak di {place}",
        "Jalan di {place} berlubang dan tergenang air setiap hujan sejak {months} bulan lalu. Sudah beberapa "
        "pengendara motor jatuh. Mohon segera diperbaiki.",
    ),
    (
        ComplaintKind.pengaduan,
        "Kesehatan",
        "Antrean puskesmas dekat {place} sangat lama",
        "Pasien harus antre dari jam 6 pagi dan baru dilayani siang. Petugas pendaftaran hanya satu orang. "
        "Mohon ditambah petugas.",
    ),
    (
        ComplaintKind.pengaduan,
        "Pendidikan",
        "Pungutan di sekolah dekat {place}",
        "Orang tua murid diminta membayar uang seragam dan uang gedung padahal sekolah negeri. Mohon ditindaklanjuti.",
    ),
    (
        ComplaintKind.pengaduan,
        "Administrasi Kependudukan",
        "KTP-el belum jadi setelah {months} bulan",
        "Saya sudah rekam KTP-el di kantor kecamatan {months} bulan lalu tetapi sampai sekarang belum dicetak. "
        "Alasannya blangko habis.",
    ),
    (
        ComplaintKind.pengaduan,
        "Air Bersih",
        "Air PDAM tidak mengalir di {place}",
        "Sudah {months} minggu air PDAM di {place} tidak mengalir, tetapi tagihan tetap datang. Warga terpaksa "
        "membeli air tangki.",
    ),
    (
        ComplaintKind.pengaduan,
        "Lingkungan Hidup",
        "Sampah menumpuk di {place}",
        "Sampah di {place} tidak diangkut lebih dari seminggu, bau dan mengundang lalat. Mohon jadwal "
        "pengangkutan diperbaiki.",
    ),
    (
        ComplaintKind.pengaduan,
        "Infrastruktur",
        "Lampu jalan mati di {place}",
        "Lampu penerangan jalan di {place} mati sejak {months} bulan, rawan kecelakaan dan kejahatan di malam hari.",
    ),
    (
        ComplaintKind.pengaduan,
        "Perlindungan Sosial",
        "Bansos tidak tepat sasaran di {place}",
        "Beberapa warga mampu menerima bantuan sosial sedangkan lansia miskin di {place} tidak terdaftar. "
        "Mohon data penerima diperbarui.",
    ),
    (
        ComplaintKind.aspirasi,
        "Transportasi",
        "Usulan halte dan angkutan umum di {place}",
        "Warga mengusulkan halte dan trayek angkutan umum yang melewati {place}, karena banyak pelajar berjalan jauh.",
    ),
    (
        ComplaintKind.permintaan_informasi,
        "Perizinan",
        "Informasi syarat izin usaha mikro",
        "Saya ingin membuka usaha di dekat {place}. Mohon informasi syarat dan lama proses perizinan usaha mikro.",
    ),
)

FIRST_NAMES = (
    "Yohanes",
    "Maria",
    "Siti",
    "Budi",
    "Agustina",
    "Rahmat",
    "Fransiska",
    "Ahmad",
    "Dewi",
    "Marthen",
    "Nur",
    "Yosef",
    "Lestari",
    "Hendrik",
    "Fitri",
)
LAST_NAMES = (
    "Lado",
    "Bessie",
    "Rahayu",
    "Santoso",
    "Manafe",
    "Tuasikal",
    "Wijaya",
    "Ndun",
    "Latuconsina",
    "Hidayat",
    "Umasugi",
    "Pello",
)


def _nik(rng: random.Random, region_code: str) -> str:
    """A NIK with a valid structure for the region: PP KK CC DDMMYY SSSS."""
    province, _, regency = region_code.partition(".")
    regency = regency or f"{rng.randint(1, 20):02d}"
    day = rng.randint(1, 28) + (40 if rng.random() < 0.5 else 0)
    return (
        f"{province}{regency}{rng.randint(1, 9):02d}{day:02d}{rng.randint(1, 12):02d}{rng.randint(60, 99):02d}"
        f"{rng.randint(1, 999):04d}"
    )


def _phone(rng: random.Random) -> str:
    return f"+62812{rng.randint(10_000_000, 99_999_999)}"


def demo_report(n: int) -> tuple[Report, Principal | None]:
    """Report n of the demo, with the principal that submits it (None: the reporter on the web)."""
    rng = random.Random(_SEED * 100_003 + n)
    city = CITIES[n % len(CITIES)] if n % 3 else CITIES[0]  # Kota Kupang (the demo agency) gets the most
    kind, category, title, body = rng.choice(TOPICS)
    place, months = rng.choice(city.places), rng.randint(2, 8)
    title, body = title.format(place=place, months=months), body.format(place=place, months=months)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    phone = _phone(rng)
    identity: dict[str, str] | None = {"name": name, "phone": phone}
    if rng.random() < 0.4:
        identity = {"name": name, "phone": phone, "nik": _nik(rng, city.region_code)}
    if rng.random() < 0.08:  # reporters do write their own details into the text; the log keeps them masked
        body += f" Saya {name}, bisa dihubungi di {phone}."
    anonymous = rng.random() < 0.2
    if rng.random() < 0.1:
        identity = None
    channel, channel_ref, suggested, principal = Channel.web, None, None, None
    roll = rng.random()
    if roll < 0.15:
        channel, channel_ref = Channel.sms, f"demo-sms-{n:04d}"
        suggested = f"pemda-{city.region_code}"
        body = title_of(body) if rng.random() < 0.3 else body
        identity, anonymous = {"phone": _phone(rng)}, False
        principal = Principal(subject="demo-sms-gateway", role=Role.integration, channel="sms")
    elif roll < 0.2 and city.region_code == "35.73":
        channel, channel_ref = Channel.integration, f"sambat-malang:SBT-{n:05d}"
        suggested = "pemda-35.73"
        principal = Principal(subject="demo-sambat-malang", role=Role.integration, channel="sambat-malang")
    elif roll < 0.35:
        channel = Channel.mobile
    command = SubmitComplaint(
        tracking_id="",
        kind=kind,
        title=title,
        body=body,
        category=category if rng.random() < 0.6 else None,
        region_code=city.region_code,
        channel=channel,
        channel_ref=channel_ref,
        anonymous=anonymous,
        confidential=rng.random() < 0.1,
        suggested_agency_id=suggested,
        reporter_token_hash="",
    )
    return Report(command, identity), principal


def seed_demo(ctx: ServiceContext) -> None:
    ids = IdDerivation(ctx.settings.signing_secret())

    def one(n: int) -> None:
        report, principal = demo_report(n)
        submit(ctx, ids, report, principal=principal, natural_key=f"demo:{n}", request={"demo": n})

    # Several at once: the store commits concurrent appends in groups, one fsync for many.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="intake-demo") as pool:
        list(pool.map(one, range(DEMO_REPORTS)))
