"""Bodies seen before are not parsed again unless something reads what they say.

Most polls get back the very bytes of the last poll of their conference. Decoding and parsing
them again (JSON, every field, every timestamp, the model's objects) was the larger part of the
CPU a client spent on such a poll, and all of it to learn what is known: the recorder's fast
path (``poller.store.unchanged``) takes an observation made of the remembered bodies as
unchanged from its ``body_digest`` alone, and scheduling reads only its status.

So each client keeps, per target, :class:`SeenBodies`: the digest of the last bodies it parsed
into an observation and the status they gave. When a poll's bodies have that digest, the
client returns a :class:`DeferredObservation` instead: the target, the time, the digest and
the status, with the bodies kept and parsed on the first read of anything else
(``conference``, ``members``, ``members_complete``, ``warnings``, the content hash, equality,
the spool's encoding). It is exact, not a guess: parsing is a function of the bodies and the
target, those bodies parsed into an observation before, so they parse into the same one again,
with the same status, warnings included, and no error. Memory stays flat: the memo holds two
16-byte digests and a status per target (at most :data:`MAX_SEEN` targets), and an observation
holds its bodies until it is parsed or dropped (the pipeline drops it once recorded).

A copy or a pickle of a deferred observation is the plain ``Observation`` (parsed);
``dataclasses.replace`` does not take one (nothing in poller replaces observations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any, NamedTuple, SupportsIndex

from poller.model import ConferenceState, MemberState, Observation, TargetKey, require_utc

MAX_SEEN = 50_000
"""Targets a client remembers at most (the least recently parsed are forgotten first): about
12 MB at most, 2.5 MB at 10,000 targets. A forgotten target's next poll is parsed."""

Parsed = tuple[ConferenceState, tuple[MemberState, ...], bool, tuple[str, ...]]
"""What parsing a poll's bodies gives: ``(conference, members, members_complete, warnings)``."""


class Seen(NamedTuple):
    """The last bodies of one target parsed into an observation."""

    digest: bytes
    """Their ``body_digest``."""
    status: str
    """The observation's ``status``."""
    head: bytes | None = None
    """The digest of the first body alone, when the client decides on it before the rest
    arrives (Telnyx: the conference, before its participants are asked for)."""


class SeenBodies:
    """Per target, the last bodies a client parsed into an observation (see the module
    docstring), for at most ``limit`` targets."""

    def __init__(self, limit: int = MAX_SEEN) -> None:
        self._limit = limit
        self._seen: dict[TargetKey, Seen] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, target: TargetKey) -> Seen | None:
        """What was last parsed for ``target``, if remembered."""
        return self._seen.get(target)

    def again(self, target: TargetKey, digest: bytes) -> Seen | None:
        """What was last parsed for ``target`` when ``digest`` is its bodies' digest (the
        target becomes the most recent), else ``None``."""
        seen = self._seen.get(target)
        if seen is None or seen.digest != digest:
            return None
        self.remember(target, seen)
        return seen

    def remember(self, target: TargetKey, seen: Seen) -> None:
        """``target``'s bodies just parsed into an observation (it becomes the most recent)."""
        seen_by_target = self._seen
        seen_by_target.pop(target, None)
        seen_by_target[target] = seen
        if len(seen_by_target) > self._limit:
            del seen_by_target[next(iter(seen_by_target))]


_SLOTS: dict[str, Any] = {f.name: Observation.__dict__[f.name] for f in fields(Observation)}
"""``Observation``'s slot descriptors, which the properties below shadow in the subclass."""
_DEFERRED = ("conference", "members", "members_complete", "warnings")
_COMPARED = tuple(f.name for f in fields(Observation) if f.compare)


class DeferredObservation(Observation):
    """An observation of bodies parsed before: ``conference``, ``members``,
    ``members_complete`` and ``warnings`` are parsed on first read; ``status`` is known
    without parsing (see the module docstring). Otherwise it is an ``Observation``, equal to
    the one parsing the same bodies at the same time makes."""

    __slots__ = ("_parse", "_status")
    _parse: Callable[[], Parsed] | None
    _status: str

    def __init__(self, target: TargetKey, observed_at: datetime, body_digest: bytes,
                 status: str, parse: Callable[[], Parsed]) -> None:
        require_utc(observed_at, "Observation.observed_at")
        for name, value in (("target", target), ("observed_at", observed_at),
                            ("body_digest", body_digest), ("_hash", None)):
            _SLOTS[name].__set__(self, value)
        object.__setattr__(self, "_parse", parse)
        object.__setattr__(self, "_status", status)

    @property
    def status(self) -> str:
        """The conference's normalised status, as the same bodies gave it last time."""
        return self._status

    @property
    def parsed(self) -> bool:
        """Whether the bodies have been parsed yet (what the tests look at)."""
        return self._parse is None

    def _field(self, name: str) -> Any:
        parse = self._parse
        if parse is not None:
            for field_name, value in zip(_DEFERRED, parse(), strict=True):
                _SLOTS[field_name].__set__(self, value)
            object.__setattr__(self, "_parse", None)  # the bodies go with it
        return _SLOTS[name].__get__(self, Observation)

    conference = property(lambda self: self._field("conference"))
    members = property(lambda self: self._field("members"))
    members_complete = property(lambda self: self._field("members_complete"))
    warnings = property(lambda self: self._field("warnings"))

    def eager(self) -> Observation:
        """The plain ``Observation`` this one is (parsing the bodies if not yet done)."""
        return Observation(target=self.target, observed_at=self.observed_at,
                           conference=self.conference, members=self.members,
                           members_complete=self.members_complete, warnings=self.warnings,
                           body_digest=self.body_digest)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        return _plain, (self.eager(),)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Observation):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)

    __hash__ = Observation.__hash__


def _plain(observation: Observation) -> Observation:
    """What a copy or a pickle of a deferred observation rebuilds: its plain observation."""
    return observation
