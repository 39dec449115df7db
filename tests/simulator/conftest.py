"""Fixtures for the simulator tests: the providers' OpenAPI specs as validators, and
simulators with HTTP clients over ``httpx.ASGITransport``.

Spec validation uses ``jsonschema`` with ``referencing`` over the whole loaded YAML document, so
every ``$ref`` resolves inside the real spec (no schema is copied by hand). Two documented
transforms are applied to the loaded documents once per session:

* **nullable** (Bandwidth, OpenAPI 3.0): ``nullable: true`` becomes ``type: [T, "null"]`` (and
  ``null`` joins an ``enum``), so the 3.0 schemas validate as JSON Schema 2020-12 (what OpenAPI
  3.1, the Telnyx spec, already is);
* **strict objects** (both): every object schema that lists ``properties`` and says nothing of
  ``additionalProperties`` gets ``additionalProperties: false``, so a field the simulator
  invents (or misspells) fails validation instead of passing silently.

``format`` is checked too (``date-time``, ``uri``, ``json-pointer``, …: the checkers of
``jsonschema[format-nongpl]``, whose absence fails the session rather than skip the checks).

The 4 MB Telnyx YAML takes seconds to parse, so the parsed documents are cached as JSON in
pytest's cache directory, keyed by the spec file's SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from poller.simulator import (
    FaultConfig,
    ScenarioConfig,
    Simulator,
    VirtualClock,
    create_app,
)

SPECS = Path(__file__).parent.parent / "specs"
TELNYX_SPEC = SPECS / "telnyx-openapi-spec3.yml"
BANDWIDTH_SPEC = SPECS / "bandwidth-sdk-bandwidth.yml"
TELNYX_KEY = "KEYSIMULATOR0000TELNYX"

FORMATS = Draft202012Validator.FORMAT_CHECKER
"""Checks ``format`` (``date-time``, ``uri``, …); the checkers come with
``jsonschema[format-nongpl]``, and without them a format would pass unchecked."""
_MISSING_FORMATS = {"date-time", "uri", "uuid", "email"} - set(FORMATS.checkers)
assert not _MISSING_FORMATS, f"install jsonschema[format-nongpl]: no {_MISSING_FORMATS} checker"


def _nullable_to_type_list(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("nullable") is True:
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        for value in node.values():
            _nullable_to_type_list(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_to_type_list(value)


def _jsonable(node: Any) -> Any:
    """YAML turns unquoted example timestamps into datetimes; JSON (the cache) wants text."""
    if isinstance(node, dict):
        return {str(key): _jsonable(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_jsonable(value) for value in node]
    if isinstance(node, date):
        return node.isoformat()
    return node


def _strict_objects(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict_objects(value)
    elif isinstance(node, list):
        for value in node:
            _strict_objects(value)


def _load_spec(path: Path, cache: pytest.Cache | None, *, nullable: bool) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = f"poller-simulator/{path.stem}-{digest[:16]}-v1"
    cached = cache.get(key, None) if cache is not None else None
    if isinstance(cached, dict):
        return cached
    document = _jsonable(yaml.load(path.read_text(), Loader=yaml.CSafeLoader))
    if nullable:
        _nullable_to_type_list(document)
    _strict_objects(document)
    if cache is not None:
        cache.set(key, document)
    return document


class OpenApiSpec:
    """One provider's OpenAPI document, able to validate response bodies against it."""

    def __init__(self, document: dict[str, Any], uri: str) -> None:
        self.document = document
        self.uri = uri
        resource = Resource(contents=document, specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(uri, resource)

    def _pointer(self, *parts: str) -> str:
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)

    def _resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        ref = node.get("$ref")
        if ref is None:
            return node, None
        target: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target, ref.removeprefix("#")

    def declares(self, path: str, method: str, status: int) -> bool:
        """Whether the operation lists a response for ``status``."""
        return str(status) in self.document["paths"][path][method]["responses"]

    def response(self, path: str, method: str, status: int) -> dict[str, Any]:
        """The (dereferenced) response object of one operation and status code."""
        response, _ = self._resolve(self.document["paths"][path][method]["responses"][str(status)])
        return response

    def response_schema_pointer(self, path: str, method: str, status: int) -> str:
        """JSON pointer to the JSON schema of one operation's response."""
        node = self.document["paths"][path][method]["responses"][str(status)]
        response, ref_pointer = self._resolve(node)
        base = ref_pointer or self._pointer("paths", path, method, "responses", str(status))
        assert "application/json" in response["content"]
        return f"{base}/content/application~1json/schema"

    def validate(self, instance: Any, pointer: str) -> None:
        """Validate ``instance`` against the schema at ``pointer`` ($refs resolved in-spec)."""
        validator = Draft202012Validator({"$ref": f"{self.uri}#{pointer}"},
                                         registry=self.registry, format_checker=FORMATS)
        validator.validate(instance)

    def validate_response(self, instance: Any, path: str, method: str, status: int) -> None:
        """Validate a response body against what the spec declares for ``status``."""
        self.validate(instance, self.response_schema_pointer(path, method, status))

    def validate_schema(self, instance: Any, name: str) -> None:
        """Validate against ``#/components/schemas/<name>``."""
        self.validate(instance, self._pointer("components", "schemas", name))


@pytest.fixture(scope="session")
def telnyx_spec(pytestconfig: pytest.Config) -> OpenApiSpec:
    """The Telnyx OpenAPI 3.1 document (loaded once per session)."""
    cache = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    return OpenApiSpec(_load_spec(TELNYX_SPEC, cache, nullable=False), "urn:spec:telnyx")


@pytest.fixture(scope="session")
def bandwidth_spec(pytestconfig: pytest.Config) -> OpenApiSpec:
    """The Bandwidth OpenAPI 3.0 document, ``nullable`` rewritten (loaded once per session)."""
    cache = getattr(pytestconfig, "cache", None)
    return OpenApiSpec(_load_spec(BANDWIDTH_SPEC, cache, nullable=True), "urn:spec:bandwidth")


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at its fixed default start."""
    return VirtualClock()


@pytest.fixture
def make_simulator(clock: VirtualClock) -> Callable[..., Simulator]:
    """Build a simulator on the test's clock: ``make_simulator(seed=…, scenario=…, …)``."""
    def make(seed: int = 7, scenario: ScenarioConfig | None = None,
             faults: FaultConfig | None = None) -> Simulator:
        return Simulator(seed=seed, clock=clock,
                         scenario=scenario or ScenarioConfig.lively(12), faults=faults)
    return make


@pytest.fixture
def simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    """A lively simulator (12 conferences per provider) without faults."""
    return make_simulator()


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``simulator`` in-process."""
    transport = httpx.ASGITransport(app=create_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        yield http


@pytest.fixture
def telnyx_auth() -> dict[str, str]:
    """Headers with the simulator's Telnyx API key."""
    return {"Authorization": f"Bearer {TELNYX_KEY}"}


@pytest.fixture
def bandwidth_basic() -> httpx.BasicAuth:
    """Basic auth with the simulator's Bandwidth API user."""
    return httpx.BasicAuth("sim-api-user", "sim-api-password")

