"""Poll results and schedule decisions as JSON, and back, exactly (the spool's records).

:func:`encode` turns an ``Observation``, a ``PollFailure`` or a ``ScheduleUpdate`` (and the
value objects inside them) into plain JSON: datetimes as ISO 8601 text, tuples as lists, the
provider kind as its value, raw provider payloads as they are. :func:`decode` reads it back
into the same objects, field by field from the classes' own type hints, so that what was
spooled during an outage is recorded later exactly as if it had been recorded at once
(content hashes included). A record that does not decode raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, get_args, get_origin

from poller.model import Observation, PollFailure, PollResult

T = TypeVar("T")

KINDS: dict[str, type[Any]] = {"observation": Observation, "failure": PollFailure}
"""The tag of each kind of result in a record."""


def encode(value: Any) -> Any:
    """``value`` as JSON (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.init and f.metadata.get("spooled", True)}
        # fields outside __init__ are caches (Observation's content hash); a body digest
        # is only compared in memory
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [encode(item) for item in value]
    return value


def encode_result(result: PollResult) -> dict[str, Any]:
    """A poll result as a tagged JSON object."""
    kind = "observation" if isinstance(result, Observation) else "failure"
    return {"kind": kind, "result": encode(result)}


def decode_result(data: Any) -> PollResult:
    """The poll result of :func:`encode_result` (``ValueError`` if it is not one)."""
    if not isinstance(data, dict):
        raise ValueError(f"a result is a JSON object, got {type(data).__name__}")
    cls = KINDS.get(data.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown result kind {data.get('kind')!r}")
    result: PollResult = decode(cls, data.get("result"))
    return result


def decode(cls: type[T], data: Any) -> T:
    """An instance of the dataclass ``cls`` from its :func:`encode` form (``ValueError`` if
    it is not one: a field missing or of another type)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    try:
        values = {name: _value(hint, data[name]) for name, hint in hints.items() if name in data}
        return cls(**values)
    except ValueError:
        raise
    except (TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{cls.__name__}: {error}") from None


_HINTS: dict[type[Any], dict[str, Any]] = {}
"""The resolved field types of each class decoded so far."""


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        hints = {name: hint for name, hint in typing.get_type_hints(cls).items()
                 if name in fields}
        _HINTS[cls] = hints
    return hints


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in get_args(hint) if option is not type(None)]
        return _value(options[0], value) if len(options) == 1 else value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if origin is tuple:
        item = get_args(hint)[0]
        return tuple(_value(item, v) for v in value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, value)
    return value
