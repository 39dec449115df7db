"""The normalised model: what poller saw of one conference at one moment.

Both providers' responses are parsed into these frozen value objects (see ``docs/providers.md``
for the field-by-field mapping). They do no I/O and know nothing about SQL; the recorder turns
successive observations into history rows.

Conventions:

* every datetime is timezone-aware UTC (naive datetimes are refused);
* ``status`` is the normalised status (``init`` / ``in_progress`` / ``completed``), or the
  provider's raw value as seen when it is one poller does not know; ``provider_status`` is the
  provider's own value (``None`` for Bandwidth, which reports no status);
* anything a provider sends that is not mapped stays in the ``raw`` JSON payloads.

Identifiers in URLs (:func:`path_segment`): a conference ID comes from configuration or
discovery and is put into a URL path. It must never reach another endpoint: ``../calls`` must
not climb out of ``/conferences/``, ``a/b`` must not add a segment, ``a?b=c`` and ``#`` must
not start a query or fragment. The rules:

* refused with ``InvalidConferenceId``: the empty string, ``.`` and ``..`` (dot segments that
  URL libraries and servers normalise away even when percent-encoded), anything longer than
  ``MAX_ID_LENGTH`` characters, anything with a control or other non-printable character
  (including line and paragraph separators and lone surrogates);
* everything else is percent-encoded as UTF-8 with no character left "safe" but the RFC 3986
  unreserved ones (``A-Z a-z 0-9 - . _ ~``), so ``/``, ``?``, ``#``, ``%`` and spaces all
  become ``%XX`` and the result is one opaque segment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias
from urllib.parse import quote

from poller.errors import InvalidConferenceId, ProviderError

JSON: TypeAlias = Any
"""A decoded JSON value (dict, list, str, int, float, bool or None)."""


class Provider(StrEnum):
    """The providers poller knows."""

    TELNYX = "telnyx"
    BANDWIDTH = "bandwidth"


class ConferenceStatus(StrEnum):
    """Normalised conference statuses. Unknown provider values are kept as plain strings."""

    INIT = "init"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


KNOWN_STATUSES = frozenset(s.value for s in ConferenceStatus)


class CompletedAtSource(StrEnum):
    """Where a conference's completion time came from."""

    PROVIDER = "provider"
    """The provider said so: Bandwidth ``completedTime``."""
    PROVIDER_UPDATED_AT = "provider_updated_at"
    """Telnyx ``updated_at`` of the first observation showing ``completed``."""
    OBSERVED = "observed"
    """No provider time: the ``observed_at`` of the first poll that saw it completed."""


def require_utc(value: datetime | None, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None`` or an aware datetime in UTC."""
    if value is None or value.tzinfo is UTC:  # the common cases, at the cost of a compare
        return
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    if offset.total_seconds() != 0:
        raise ValueError(f"{name} must be in UTC, got offset {offset}")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TargetKey:
    """Identifies one polled conference: the config's account name plus the provider's ID."""

    provider: Provider
    account: str
    conference_id: str
    region: str | None = None
    """Telnyx region query value (``Australia``, ``Europe``, ``Middle East``, ``US``)."""

    def __str__(self) -> str:
        return f"{self.provider.value}:{self.account}:{self.conference_id}"


# -- identifiers in URLs ---------------------------------------------------------------------------

MAX_ID_LENGTH = 256
"""The longest conference ID accepted, in characters.

Telnyx IDs are 36-character UUIDs and Bandwidth's ``conf-…`` IDs about 50 characters, so this
leaves ample room while keeping URLs well inside every server's limit.
"""


def path_segment(value: str, what: str = "conference ID") -> str:
    """``value`` percent-encoded as exactly one path segment, or ``InvalidConferenceId``."""
    if not isinstance(value, str):
        raise InvalidConferenceId(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidConferenceId(f"{what} is empty")
    if value in (".", ".."):
        raise InvalidConferenceId(f"{what} {value!r} is a dot segment and cannot be used in a URL")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidConferenceId(
            f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH} are accepted"
        )
    if not value.isprintable():
        # Also catches lone surrogates (category Cs), which could not be UTF-8 encoded.
        raise InvalidConferenceId(f"{what} {value[:40]!r} contains a control character")
    return quote(value.encode("utf-8"), safe="")


@dataclass(frozen=True, slots=True)
class MemberState:
    """One member of a conference as one observation saw it.

    Telnyx participant / Bandwidth active member. Fields a provider does not report are ``None``.
    """

    member_id: str
    """Telnyx participant ``id``; Bandwidth ``callId``."""
    call_control_id: str | None = None
    """Telnyx ``call_control_id``; Bandwidth ``callId``."""
    call_leg_id: str | None = None
    """Telnyx ``call_leg_id``; Bandwidth: not reported."""
    status: str | None = None
    """Telnyx ``joining`` / ``joined`` / ``left`` (unknown values as seen); Bandwidth: ``None``."""
    muted: bool | None = None
    on_hold: bool | None = None
    coaching: tuple[str, ...] | None = None
    """Telnyx ``whisper_call_control_ids``; Bandwidth ``callIdsToCoach`` (``None`` when null)."""
    end_conference_on_exit: bool | None = None
    soft_end_conference_on_exit: bool | None = None
    created_at: datetime | None = None
    """Provider's join time (Telnyx ``created_at``); Bandwidth: not reported."""
    updated_at: datetime | None = None
    """Provider's last change (Telnyx ``updated_at``); Bandwidth: not reported."""
    member_url: str | None = None
    """Bandwidth ``memberUrl``."""
    raw: JSON = field(default=None, compare=False, hash=False, repr=False)
    """The provider's JSON object for this member, unchanged."""

    def __post_init__(self) -> None:
        require_utc(self.created_at, "MemberState.created_at")
        require_utc(self.updated_at, "MemberState.updated_at")


@dataclass(frozen=True, slots=True)
class ConferenceState:
    """A conference's own fields as one observation saw them (members apart)."""

    conference_id: str
    status: str
    """Normalised status, or the provider's unknown value as seen."""
    provider_status: str | None = None
    """The provider's raw status (Telnyx ``status``); ``None`` for Bandwidth."""
    name: str | None = None
    region: str | None = None
    """Telnyx ``region`` as reported (e.g. ``sv1``); Bandwidth: ``None``."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    """The provider's own completion time (Bandwidth ``completedTime``); Telnyx has none."""
    end_reason: str | None = None
    """Telnyx ``end_reason`` as given; Bandwidth never reports one (always ``None``)."""
    ended_by_call_control_id: str | None = None
    ended_by_call_session_id: str | None = None
    connection_id: str | None = None
    tag: str | None = None
    event_url: str | None = None
    """Bandwidth ``conferenceEventUrl``."""
    event_method: str | None = None
    """Bandwidth ``conferenceEventMethod``."""
    record_type: str | None = None
    raw: JSON = field(default=None, compare=False, hash=False, repr=False)
    """The provider's conference JSON object, unchanged (Telnyx: the ``data`` object)."""

    def __post_init__(self) -> None:
        for name in ("created_at", "updated_at", "expires_at", "completed_at"):
            require_utc(getattr(self, name), f"ConferenceState.{name}")

    @property
    def is_completed(self) -> bool:
        """Whether the normalised status is ``completed`` (the conference has ended)."""
        return self.status == ConferenceStatus.COMPLETED

    @property
    def status_known(self) -> bool:
        """Whether ``status`` is one of the normalised statuses, not a provider value poller
        does not know (kept as seen) or the Telnyx ``unknown`` marker."""
        return self.status in KNOWN_STATUSES


@dataclass(frozen=True, slots=True)
class Observation:
    """One successful poll of one conference: its state and its members at ``observed_at``."""

    target: TargetKey
    observed_at: datetime
    """The poller's clock when the (last) response arrived."""
    conference: ConferenceState
    members: tuple[MemberState, ...] = ()
    members_complete: bool = True
    """False when the member list may be partial (e.g. the page cap was hit)."""
    warnings: tuple[str, ...] = ()
    """Oddities met while parsing (unknown enum values, unparseable timestamps, …)."""
    body_digest: bytes | None = field(default=None, repr=False, compare=False,
                                      metadata={"spooled": False})
    """A digest of the response bodies this observation was parsed from, in order (see
    :func:`body_digest`; ``None``: not made from responses, or not said). Equal digests of
    one target's observations mean equal bodies, so equal contents: :meth:`reuse_hash`."""
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)
    """:meth:`content_hash`, once computed (a cache: not a field anything stores)."""

    def __post_init__(self) -> None:
        require_utc(self.observed_at, "Observation.observed_at")

    def member_map(self) -> Mapping[str, MemberState]:
        """Members by ``member_id`` (the last one wins if a provider lists one twice)."""
        return {m.member_id: m for m in self.members}

    def raw_payload(self) -> JSON:
        """The provider JSON this observation was made from, in one document."""
        return {
            "conference": self.conference.raw,
            "members": [m.raw for m in self.members],
        }

    @property
    def status(self) -> str:
        """``conference.status`` (what scheduling reads; a deferred observation,
        ``poller.providers.deferred``, knows it without parsing its bodies)."""
        return self.conference.status

    def content_hash(self) -> str:
        """A stable hash of everything observed except the observation time.

        Two observations with equal hashes are the same state: the recorder writes no history
        for the second. It covers the raw payloads too, so a change in a field poller does not
        map still makes a new snapshot. Computed once per observation.
        """
        if self._hash is None:
            object.__setattr__(self, "_hash", self._digest())
        assert self._hash is not None
        return self._hash

    def reuse_hash(self, body_digest: bytes, content_hash: str) -> None:
        """Take ``content_hash`` as this observation's when it was parsed from the bodies
        (``body_digest``) of an observation of the same target with that hash: parsing is a
        function of the bodies and the target, so it is the hash :meth:`content_hash` gives."""
        if self.body_digest is not None and self.body_digest == body_digest:
            object.__setattr__(self, "_hash", content_hash)

    def _digest(self) -> str:
        members = sorted(self.members, key=lambda m: m.member_id)
        document = {
            "conference": _state_dict(self.conference),
            "conference_raw": self.conference.raw,
            "members": [_state_dict(m) | {"raw": m.raw} for m in members],
            "members_complete": self.members_complete,
        }
        encoded = json.dumps(document, sort_keys=True, default=_json_default, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()


def body_digest(bodies: Iterable[bytes]) -> bytes:
    """The digest of the response bodies an observation is parsed from, in order
    (:attr:`Observation.body_digest`): BLAKE2b-128 over each body's length and bytes, so
    that no two lists of bodies share an input. About a microsecond for a poll's bodies."""
    digest = hashlib.blake2b(digest_size=16)
    for body in bodies:
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    return digest.digest()


def _state_dict(state: ConferenceState | MemberState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__dataclass_fields__ if name != "raw"}


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class PollFailure:
    """One failed poll of one conference. It fabricates no state: only the error is recorded."""

    target: TargetKey
    observed_at: datetime
    """When the failure was noticed (the poller's clock)."""
    kind: str
    """``poll_error.kind``: not_found, rate_limited, server_error, timeout, network, bad_response,
    auth, or internal (our own bug; see ``poller.errors``)."""
    message: str
    """Short, secret-free description."""
    http_status: int | None = None
    provider_code: str | None = None
    retry_after_seconds: float | None = None

    def __post_init__(self) -> None:
        require_utc(self.observed_at, "PollFailure.observed_at")

    @classmethod
    def from_error(cls, target: TargetKey, observed_at: datetime, error: ProviderError
                   ) -> PollFailure:
        """The failure record of a provider error (its message carries no secrets)."""
        return cls(
            target=target,
            observed_at=observed_at,
            kind=error.kind,
            message=error.message,
            http_status=error.http_status,
            provider_code=error.provider_code,
            retry_after_seconds=error.retry_after_seconds,
        )


PollResult: TypeAlias = Observation | PollFailure
"""What one poll produced; the recorder takes batches of these."""


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """One Telnyx conference-participant detail record: a participant's stay, after the fact."""

    member_id: str
    """The participant ``id`` (the same as the REST participant's)."""
    call_leg_id: str | None
    joined_at: datetime
    left_at: datetime | None

    def __post_init__(self) -> None:
        require_utc(self.joined_at, "ParticipantRecord.joined_at")
        require_utc(self.left_at, "ParticipantRecord.left_at")


class EventKind(StrEnum):
    """What a provider event says happened, for the events poller applies to the history."""

    CONFERENCE_CREATED = "conference_created"
    CONFERENCE_ENDED = "conference_ended"
    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event a provider pushed (a Telnyx webhook, a Bandwidth callback), as received.

    ``kind`` is ``None`` for event types poller keeps but does not apply (floor changes,
    playback, recordings, types it does not know).
    """

    provider: Provider
    key: str
    """Unique per account: Telnyx ``data.id``; Bandwidth (which sends no ID) a hash of the
    callback's fields, so a repeated delivery has the same key."""
    event_type: str
    """As the provider spells it (``conference.participant.joined``, ``conferenceMemberJoin``)."""
    kind: EventKind | None
    conference_id: str | None
    call_id: str | None
    """The member's call: Telnyx ``call_control_id``, Bandwidth ``callId``."""
    occurred_at: datetime | None
    """The provider's time of the event (Telnyx ``occurred_at``, Bandwidth ``eventTime``)."""
    reason: str | None = None
    """Telnyx ``conference.ended`` ``reason``."""
    name: str | None = None
    """The conference's name where the event says it (Bandwidth ``name``)."""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_utc(self.occurred_at, "ProviderEvent.occurred_at")
