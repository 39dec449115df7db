"""The providers' pushed events: checking that a request is genuine, and reading its body.

Pure functions (no I/O) used by the receiver (``poller.daemon.webhooks``), in the order it calls
them. Each refuses with :class:`~poller.errors.WebhookRejected` (reason and HTTP status), so the
receiver stores nothing of a request that fails any of them.

* **Telnyx** (``../shared/research/webhooks.md`` §1.4): ``telnyx-signature-ed25519`` is the
  base64 Ed25519 signature, by the account's key, of ``{telnyx-timestamp}|{raw body}``;
  :func:`verify_telnyx` checks it with ``cryptography`` over the bytes as received, then that
  the timestamp lies within the tolerance of now (either way: a replayed old request fails).
* **Bandwidth** (§2.3): HTTP Basic with the credentials of the BXML ``<Conference>``.
  Bandwidth first calls without credentials and sends them only after a 401 carrying
  ``WWW-Authenticate``; :func:`check_basic` compares in constant time.
* :func:`parse_telnyx_event` / :func:`parse_bandwidth_event` read the JSON into a
  :class:`~poller.model.ProviderEvent`; a body that is not a JSON object of the provider's
  envelope is ``malformed`` (400). An event type poller does not apply is read all the same
  (``kind`` ``None``): it is kept, not refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from poller.errors import WebhookRejected
from poller.model import EventKind, Provider, ProviderEvent
from poller.providers.fields import parse_timestamp

TELNYX_SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER: Final = "telnyx-timestamp"

TELNYX_KINDS: Final = {
    "conference.created": EventKind.CONFERENCE_CREATED,
    "conference.ended": EventKind.CONFERENCE_ENDED,
    "conference.participant.joined": EventKind.MEMBER_JOINED,
    "conference.participant.left": EventKind.MEMBER_LEFT,
}
"""The Telnyx event types poller applies; the others are kept as received."""
BANDWIDTH_KINDS: Final = {
    "conferenceCreated": EventKind.CONFERENCE_CREATED,
    "conferenceCompleted": EventKind.CONFERENCE_ENDED,
    "conferenceMemberJoin": EventKind.MEMBER_JOINED,
    "conferenceMemberExit": EventKind.MEMBER_LEFT,
}
"""The Bandwidth callback types poller applies; the others are kept as received."""

_MAX_TEXT = 1000
"""The longest ID, type or reason read from an event (longer: malformed)."""


def reject(message: str, reason: str, status: int) -> WebhookRejected:
    """The error that refuses a request (see the module docstring)."""
    return WebhookRejected(message, reason=reason, status=status)


def verify_telnyx(public_key: bytes, headers: Mapping[str, str], body: bytes, *,
                  now: datetime, tolerance_seconds: float) -> None:
    """Raise ``WebhookRejected`` (401) unless ``body`` carries a valid, fresh Telnyx signature.

    ``headers`` must look names up case-insensitively (Starlette's do).
    """
    signature_text = headers.get(TELNYX_SIGNATURE_HEADER)
    timestamp_text = headers.get(TELNYX_TIMESTAMP_HEADER)
    if not signature_text or not timestamp_text:
        raise reject(f"no {TELNYX_SIGNATURE_HEADER} or {TELNYX_TIMESTAMP_HEADER} header",
                     "missing_signature", 401)
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64 or not timestamp_text.isascii() or not timestamp_text.isdigit():
        raise reject("the signature or the timestamp is not well formed", "bad_signature", 401)
    # cryptography costs 6 MB of memory: loaded when a Telnyx event first arrives.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, timestamp_text.encode() + b"|" + body)
    except InvalidSignature:
        raise reject("the signature does not match the body and the account's public key",
                     "bad_signature", 401) from None
    age = now.timestamp() - int(timestamp_text)
    if abs(age) > tolerance_seconds:
        raise reject(f"the signed timestamp is {age:+.0f} s from now (tolerance "
                     f"{tolerance_seconds:g} s)", "stale_timestamp", 401)


def check_basic(authorization: str | None, username: str, password: str) -> None:
    """Raise ``WebhookRejected`` (401) unless ``authorization`` is HTTP Basic with these
    credentials (compared in constant time)."""
    if not authorization:
        raise reject("no credentials (Bandwidth sends them after this challenge)",
                     "challenged", 401)
    scheme, _, encoded = authorization.partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    expected = f"{username}:{password}".encode()
    if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
        raise reject("wrong credentials", "bad_credentials", 401)


def _document(body: bytes) -> dict[str, Any]:
    """The JSON object of ``body`` (UTF-8, as stored), or ``malformed``."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise reject("the body is not JSON in UTF-8", "malformed", 400) from None
    if not isinstance(document, dict):
        raise reject("the body is not a JSON object", "malformed", 400)
    return document


def _text(value: object, what: str, *, required: bool = False) -> str | None:
    """A string field of an event: ``None`` when absent; ``malformed`` when of another type."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise reject(f"{what} is {'missing or ' if required else ''}not a non-empty string",
                     "malformed", 400)
    if "\x00" in value or _has_surrogate(value):  # no database column could hold it
        raise reject(f"{what} holds a NUL or a lone surrogate", "malformed", 400)
    return value


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _time(value: object, what: str, warnings: list[str]) -> datetime | None:
    if value is not None and not isinstance(value, str):
        raise reject(f"{what} is not a timestamp string", "malformed", 400)
    parsed = parse_timestamp(value, what, warnings)
    if value is not None and parsed is None:
        raise reject(f"{what} is not a readable timestamp", "malformed", 400)
    return parsed


def parse_telnyx_event(body: bytes) -> ProviderEvent:
    """A Telnyx webhook ``{"data": {"id", "event_type", "occurred_at"?, "payload": {…}}}``.

    ``occurred_at`` sits in ``payload`` for most types and beside it for participant joined
    and left (the spec has both); the floor-changed event comes without the ``data`` wrapper.
    """
    document = _document(body)
    data = document.get("data", document)
    if not isinstance(data, dict):
        raise reject("data is not an object", "malformed", 400)
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise reject("data.payload is not an object", "malformed", 400)
    event_type = _text(data.get("event_type"), "data.event_type", required=True)
    assert event_type is not None
    key = _text(data.get("id"), "data.id", required=True)
    assert key is not None
    warnings: list[str] = []
    occurred = data.get("occurred_at", payload.get("occurred_at"))
    return ProviderEvent(
        provider=Provider.TELNYX, key=key, event_type=event_type,
        kind=TELNYX_KINDS.get(event_type),
        conference_id=_text(payload.get("conference_id"), "payload.conference_id"),
        call_id=_text(payload.get("call_control_id"), "payload.call_control_id"),
        occurred_at=_time(occurred, "occurred_at", warnings),
        reason=_text(payload.get("reason"), "payload.reason"),
        warnings=tuple(warnings))


def bandwidth_event_key(document: Mapping[str, Any]) -> str:
    """Bandwidth sends no event ID: the SHA-256 of the callback's fields (sorted JSON), the
    same for every delivery of one callback."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))  # ASCII: any text
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_bandwidth_event(body: bytes) -> ProviderEvent:
    """A Bandwidth conference callback: a flat object with ``eventType``, ``eventTime``,
    ``conferenceId`` and, for members, ``callId``."""
    document = _document(body)
    event_type = _text(document.get("eventType"), "eventType", required=True)
    assert event_type is not None
    warnings: list[str] = []
    return ProviderEvent(
        provider=Provider.BANDWIDTH, key=bandwidth_event_key(document), event_type=event_type,
        kind=BANDWIDTH_KINDS.get(event_type),
        conference_id=_text(document.get("conferenceId"), "conferenceId"),
        call_id=_text(document.get("callId"), "callId"),
        occurred_at=_time(document.get("eventTime"), "eventTime", warnings),
        name=_text(document.get("name"), "name"), warnings=tuple(warnings))
