"""What a retried submission must get again: the same tracking ID, reporter token and event id.

A submission with a natural key — the client's `Idempotency-Key`, an SMS `message_id`, an integrated system's
`(channel, external_id)` — derives everything from that key with an HMAC under a key of the server's own
(derived from the signing secret), instead of storing it:

- nothing secret is kept: the reporter token exists only in the replies, its hash in the event;
- concurrent retries compute the same event id, so the store's idempotent re-append turns twenty parallel
  requests into one event, and each of them reads that one event back to answer;
- the event's metadata carries `intake.key` (a digest of the natural key) and `intake.request` (a digest of the
  request as validated), so a retry is recognised and a different request under the same key is refused (409).

Attempt n > 0 derives a fresh tracking ID for the rare case that attempt n-1's ID already belongs to another
report; a retry walks the same sequence and finds its own report again. Keys never expire: they are honoured as
long as the signing secret stays the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lapor.auth import new_reporter_token
from lapor.store.model import canonical_json, new_event_id
from lapor.tracking import RANDOM_BITS, format_tracking_id

_DOMAIN = b"lapor/intake/v1"


@dataclass(frozen=True)
class SubmissionIds:
    """The identifiers of one submission attempt."""

    tracking_id: str
    event_id: uuid.UUID
    reporter_token: str
    key_digest: str | None  # None for a submission without a natural key
    _seed: bytes

    def vault_ref(self, purpose: str, request_digest: str | None) -> str | None:
        """The vault reference for `purpose` ("identity", "original"): derived for a keyed submission, so a retry
        writes the same entry, and distinct per request, so a refused request never overwrites the accepted one.
        None means: let the vault choose a random one."""
        if self.key_digest is None:
            return None
        digest = hmac.new(self._seed, f"{purpose}\0{request_digest}".encode(), hashlib.sha256).digest()
        return "pii_" + _b64(digest)[:32]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class IdDerivation:
    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _DOMAIN, hashlib.sha256).digest()

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def keyed(self, natural_key: str, attempt: int) -> SubmissionIds:
        seed = self._mac("submission", natural_key, str(attempt))
        number = int.from_bytes(hmac.new(seed, b"tracking", hashlib.sha256).digest()[:8], "big")
        return SubmissionIds(
            tracking_id=format_tracking_id(number >> (64 - RANDOM_BITS)),
            event_id=uuid.UUID(bytes=hmac.new(seed, b"event", hashlib.sha256).digest()[:16], version=4),
            reporter_token=_b64(hmac.new(seed, b"reporter-token", hashlib.sha256).digest()),
            key_digest=self._mac("key", natural_key).hex()[:32],
            _seed=seed,
        )

    @staticmethod
    def fresh() -> SubmissionIds:
        """Random identifiers, for a submission without a natural key. Keyed tokens have the same form as
        `new_reporter_token()`: 32 bytes, URL-safe base64."""
        return SubmissionIds(
            tracking_id=format_tracking_id(secrets.randbits(RANDOM_BITS)),
            event_id=new_event_id(),
            reporter_token=new_reporter_token(),
            key_digest=None,
            _seed=b"",
        )

    def request_digest(self, request: Mapping[str, Any]) -> str:
        """A digest of the request as validated (so key order and whitespace between tokens do not matter)."""
        return hmac.new(self._key, canonical_json(dict(request)), hashlib.sha256).hexdigest()[:32]

    def sender_key(self, phone: str) -> str:
        """What the SMS rate limit counts a sender by (the number as intake normalises it): a keyed hash, so the
        limits' storage (memory, or a Redis other systems may read) never holds a citizen's number. Its own label:
        it cannot be matched with the reporter pseudonyms of intake's read model either."""
        return self._mac("rate-limit", "sms", phone).hex()[:32]

    def reporter_keys(self, identity: Mapping[str, Any] | None) -> list[str]:
        """Pseudonyms of a reporter's NIK, phone and e-mail, to notice the same reporter again (duplicate
        suspicion) without keeping the values themselves in a read model."""
        if not identity:
            return []
        return [
            self._mac("reporter", field, str(identity[field]).strip().lower()).hex()[:32]
            for field in ("nik", "phone", "email")
            if identity.get(field)
        ]
