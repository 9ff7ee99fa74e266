"""Agency ids in URLs: `{agency_id:agency}`.

An agency id may hold slashes (a unit is `<agency_id>/<unit>`), so in a URL it spans path segments, and a
plain `{agency_id:path}` also took the name of an agency's own settings for a unit: `PUT
/api/agencies/pemda-53.71/webhooks` reached routing's "change the agency pemda-53.71/webhooks" (401, 403 or
422) instead of answering that webhooks take GET and POST (405). The `agency` convertor matches an agency id
none of whose later segments is one of `AGENCY_SETTINGS` (the names followup gives an agency's settings in
its URLs), and routing refuses to register a unit by such a name (`names_a_setting`), so every URL under
/api/agencies/ means one thing. Importing this module registers the convertor with Starlette.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from starlette.convertors import Convertor, register_url_convertor

from schemas.events import AGENCY_ID_MAX_LENGTH, AGENCY_ID_PATTERN

# An agency id as a path parameter: f"/api/agencies/{AGENCY_ID}/webhooks".
AGENCY_ID = "{agency_id:agency}"
# Its type in the route (`agency_id: AgencyPath`): the convertor takes any segments, so the id's pattern and length are
# checked here, and a malformed id is a 422 that says why. Followup's routes took a plain `str` until session 30 and
# answered 404 "agency pemda-53.71/a b not found", quoting an id of any length whole.
AgencyPath = Annotated[str, Path(pattern=AGENCY_ID_PATTERN, max_length=AGENCY_ID_MAX_LENGTH)]
# What follows an agency id in followup's URLs: /api/agencies/{agency_id}/follow-up-approval, .../webhooks, and
# /api/queues/{agency_id}/escalated (session 29).
AGENCY_SETTINGS = frozenset({"follow-up-approval", "webhooks", "escalated"})

_SETTING = "|".join(re.escape(name) for name in sorted(AGENCY_SETTINGS))


class AgencyIdConvertor(Convertor[str]):
    """One or more path segments, the later ones none of `AGENCY_SETTINGS` (the id's own pattern is checked by
    the route's parameter, so a malformed id is a 422 that says why, not a 404)."""

    regex = rf"[^/]+(?:/(?!(?:{_SETTING})(?:/|$))[^/]+)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


_IN_A_URL = re.compile(AgencyIdConvertor.regex)


def names_a_setting(agency_id: str) -> bool:
    """Whether a (well-formed) unit's id has a segment the URLs use for an agency's settings
    (`pemda-53.71/webhooks`): the convertor could not match it."""
    return _IN_A_URL.fullmatch(agency_id) is None


register_url_convertor("agency", AgencyIdConvertor())
