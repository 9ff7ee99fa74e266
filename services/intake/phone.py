"""Phone numbers as intake reads them, from every channel: the web form's and the API's reporter identity, and the
SMS gateway's sender. One reading, so that one subscriber is one number for the vault, the rate limit and duplicate
suspicion whichever way it came in.

lokal-id's `parse_phone` takes `0812...`, `62812...` and `+62812...` but not the international call prefix `00`
(`0062812...`, as dialled from abroad or stored in some contact lists): it reads the leading `0` as the trunk prefix,
so a short number became a landline `+6262...` and a mobile number was refused as a landline too long. Intake reads
the `00` as the "+" it stands for before lokal-id looks (session 30: SMS first, then the web form).
"""

from __future__ import annotations

from lokal import PhoneInfo, parse_phone


def international_form(number: str) -> str:
    """The number with a leading international call prefix `00` (after an optional "+", around spaces) written as
    "+"; any other number as given."""
    digits = number.strip().removeprefix("+")
    return "+" + digits.removeprefix("00") if digits.startswith("00") else number


def read_phone(number: str) -> PhoneInfo:
    """lokal-id's reading of the number in its international form: `e164` when it is an Indonesian number."""
    return parse_phone(international_form(number))
