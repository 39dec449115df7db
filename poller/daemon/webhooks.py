"""The webhook receiver of ``poller run``: provider events into the inbox, on their own port.

``[webhooks] listen`` turns it on (``docs/webhooks.md``). Two routes:

* ``POST /webhooks/telnyx/{account}``: the Ed25519 signature of the account's public key over
  ``{telnyx-timestamp}|{body}``, a timestamp within ``timestamp_tolerance_seconds`` of now;
  answered ``200`` with an empty body.
* ``POST /webhooks/bandwidth/{account}``: HTTP Basic with the account's webhook credentials;
  a request without them gets Bandwidth's challenge (``401`` with ``WWW-Authenticate``), after
  which Bandwidth sends them; answered ``204`` with an empty body (what a callback's answer
  holds is executed as BXML, so it holds nothing).

Every request is checked in this order, and the first failure answers without storing
anything: the account (``404`` unless it is configured for this provider with a webhook secret),
Bandwidth's credentials (``401``), the body size (``413`` past ``max_body_bytes``, before it is
read whole), Telnyx's signature and timestamp (``401``), the JSON envelope (``400``). Then the
event is stored raw in ``webhook_event`` (:mod:`poller.store.inbox`) and only after the commit
is the request answered, so a crash after the answer loses nothing; a repeated delivery is
answered the same and stored once. With the database away the answer is ``503``: nothing was
stored, and the provider delivers again (or to its failover URL).

A new conference-created event of an account with ``discover = true`` (and, with
``discover_name``, an event naming that name: Bandwidth's do, Telnyx's do not) starts polling
the conference at once, as discovery would have at its next listing (``discovered`` target, the
account's default region for Telnyx).

A reload swaps the accounts and secrets whole (:meth:`WebhookReceiver.reconfigure`); the
address takes a restart.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from poller.config import (
    BasicCredentials,
    Config,
    TelnyxWebhookKey,
    WebhookSecret,
    WebhookSettings,
)
from poller.daemon.endpoints import ObservabilityServer, build_server
from poller.daemon.metrics import PollerMetrics
from poller.errors import ConfigError, InvalidConferenceId, StoreUnavailable, WebhookRejected
from poller.model import EventKind, Provider, ProviderEvent, TargetKey, path_segment
from poller.polling.internal import InternalErrors
from poller.providers.webhooks import (
    check_basic,
    parse_bandwidth_event,
    parse_telnyx_event,
    reject,
    verify_telnyx,
)
from poller.store.gateway import Store

log = logging.getLogger(__name__)

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="poller webhooks"'}
STORE_RETRY_AFTER_SECONDS = 30
MAX_CONCURRENT_REQUESTS = 200
"""Past this many connections at once the receiver answers 503 (the providers retry) rather
than queue without bound on the loop the polls share."""
RECONCILE_SECONDS = 1.0
"""How often ``poller run`` applies the pending events (while the receiver is on)."""


@dataclass(frozen=True, slots=True)
class _Account:
    provider: Provider
    secret: WebhookSecret
    discover: bool = False
    discover_name: str | None = None


class WebhookReceiver:
    """Checks, stores and answers provider events (see the module docstring)."""

    def __init__(self, config: Config, secrets: Mapping[str, WebhookSecret], store: Store, *,
                 clock: Callable[[], datetime], metrics: PollerMetrics | None = None,
                 internal: InternalErrors | None = None) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.internal = internal or InternalErrors()
        self.settings = config.webhooks
        self.refusals: Counter[tuple[str, str]] = Counter()
        """Requests refused so far, by (provider, reason): each kind is logged at WARNING the
        1st, 10th, 100th … time only, so a flood of bad requests does not flood the log."""
        self._accounts: dict[str, _Account] = {}
        self.reconfigure(config, secrets)

    def reconfigure(self, config: Config, secrets: Mapping[str, WebhookSecret]) -> None:
        """Take the accounts and secrets of ``config`` (a reload), all at once."""
        accounts = {}
        for account in config.accounts:
            secret = secrets.get(account.name)
            if secret is not None:
                accounts[account.name] = _Account(account.kind, secret, account.discover,
                                                  account.discover_name)
        if config.webhooks.listen != self.settings.listen:
            log.warning("webhooks.listen changed: that takes a restart; the receiver keeps "
                        "its address")
        self._accounts, self.settings = accounts, config.webhooks.model_copy(
            update={"listen": self.settings.listen})

    async def reconcile(self) -> None:
        """Apply the pending events polling has caught up with, count and log what it did
        (a daemon job: ``poller.daemon.jobs`` is its error boundary)."""
        stats = await self.store.reconcile(self.clock())
        for detail in stats.conflicts:
            log.warning("provider event not applied (polling saw otherwise): %s", detail)
        if self.metrics is not None:
            for (provider, outcome), n in stats.outcomes.items():
                self.metrics.webhook_outcomes.labels(provider, outcome).inc(n)
            if stats.stays:
                self.metrics.webhook_stays.inc(stats.stays)
        if stats.outcomes:
            log.info("provider events applied: %s%s", ", ".join(
                f"{n} {provider} {outcome}" for (provider, outcome), n in
                sorted(stats.outcomes.items())), f"; {stats.stays} stays no poll saw recorded"
                if stats.stays else "")

    @property
    def accounts(self) -> list[str]:
        """The accounts whose events are taken."""
        return sorted(self._accounts)

    def app(self) -> Starlette:
        """The ASGI app of the two routes."""
        return Starlette(routes=[
            Route("/webhooks/telnyx/{account}", self._telnyx, methods=["POST"]),
            Route("/webhooks/bandwidth/{account}", self._bandwidth, methods=["POST"]),
        ])

    async def _telnyx(self, request: Request) -> Response:
        return await self._receive(request, Provider.TELNYX)

    async def _bandwidth(self, request: Request) -> Response:
        return await self._receive(request, Provider.BANDWIDTH)

    async def _receive(self, request: Request, provider: Provider) -> Response:
        name = request.path_params["account"]
        try:
            event, body = await self._accept(request, provider, name)
        except WebhookRejected as rejected:
            return self._refused(provider, name, rejected)
        try:
            new = await self.store.store_event(name, event, body.decode(), self.clock())
        except StoreUnavailable as error:
            log.error("%s event %s for account %r not stored (the provider is asked to deliver "
                      "it again): %s", provider, event.event_type, name, error)
            return self._refused(provider, name, WebhookRejected(
                "the database is not available", reason="store_unavailable", status=503))
        except Exception as error:  # our own bug: a 500, and the provider delivers again
            self.internal.report("webhook", error, f"storing a {provider} event")
            return PlainTextResponse("internal error", status_code=500)
        if self.metrics is not None:
            self.metrics.observe_webhook(provider, stored=new)
        if new and event.kind is EventKind.CONFERENCE_CREATED:
            await self._track(name, event)
        log.debug("%s event %s %s for account %r (%s)", provider, event.event_type, event.key,
                  name, "stored" if new else "a repeated delivery")
        return Response(status_code=200 if provider is Provider.TELNYX else 204)

    async def _accept(self, request: Request, provider: Provider, name: str
                      ) -> tuple[ProviderEvent, bytes]:
        """The event and the raw body of an acceptable request, or ``WebhookRejected``."""
        account = self._accounts.get(name)
        if account is None or account.provider is not provider:
            raise reject(f"no {provider} account {name!r} takes webhooks here",
                         "unknown_account", 404)
        secret = account.secret
        if isinstance(secret, BasicCredentials):
            check_basic(request.headers.get("authorization"), secret.username, secret.password)
        body = await _read_body(request, self.settings.max_body_bytes)
        if isinstance(secret, TelnyxWebhookKey):
            verify_telnyx(secret.public_key, request.headers, body, now=self.clock(),
                          tolerance_seconds=self.settings.timestamp_tolerance_seconds)
            return parse_telnyx_event(body), body
        return parse_bandwidth_event(body), body

    async def _track(self, name: str, event: ProviderEvent) -> None:
        """Poll a conference its creation event told of, for a discovering account."""
        account = self._accounts.get(name)
        if (account is None or not account.discover or event.conference_id is None
                or (account.discover_name is not None and event.name != account.discover_name)):
            return
        try:
            path_segment(event.conference_id)
            added = await self.store.add_discovered(
                [TargetKey(account.provider, name, event.conference_id)], self.clock())
        except (StoreUnavailable, InvalidConferenceId) as error:
            log.warning("%s conference %.80r of account %r: not tracked from its creation event "
                        "(discovery still lists it): %s", account.provider, event.conference_id,
                        name, error)
            return
        for target in added:
            log.info("tracking %s conference %s of account %r from its creation event",
                     target.provider, target.conference_id, name)

    def _refused(self, provider: Provider, name: str, rejected: WebhookRejected) -> Response:
        if self.metrics is not None:
            self.metrics.observe_webhook(provider, rejected=rejected.reason)
        kind = (provider.value, rejected.reason)
        self.refusals[kind] += 1
        count = self.refusals[kind]
        loud = rejected.reason != "challenged" and count == 10 ** (len(str(count)) - 1)
        log.log(logging.WARNING if loud else logging.DEBUG,
                "%s webhook for account %.60r refused (%d %s): %s%s", provider, name,
                rejected.status, rejected.reason, rejected,
                f" ({count} refused for this reason so far)" if count > 1 else "",
                extra={"provider": provider.value, "account": name[:100],
                       "reason": rejected.reason, "http_status": rejected.status})
        headers = dict(BASIC_CHALLENGE) if (
            rejected.status == 401 and provider is Provider.BANDWIDTH) else {}
        if rejected.status == 503:
            headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
        return PlainTextResponse(f"{rejected}\n", status_code=rejected.status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``WebhookRejected`` (413) as soon as it is known to pass ``limit``."""
    too_large = reject(f"the body is larger than {limit} bytes (webhooks.max_body_bytes)",
                       "too_large", 413)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def start_receiver(servers: list[ObservabilityServer], receiver: WebhookReceiver,
                         settings: WebhookSettings) -> None:
    """Serve ``receiver`` on ``webhooks.listen`` (if set), appending the server to
    ``servers``; an address in use is a ``ConfigError`` naming the key."""
    address = settings.address
    if address is None:
        return
    server = build_server(receiver.app(), *address, key="webhooks.listen",
                          limit_concurrency=MAX_CONCURRENT_REQUESTS)
    try:
        await server.start()
    except ConfigError as error:
        raise ConfigError(f"webhooks.listen: {error}", key="webhooks.listen") from None
    servers.append(server)
    for host, port in server.addresses:
        shown = f"[{host}]" if ":" in host else host
        log.info("serving /webhooks/telnyx/<account>, /webhooks/bandwidth/<account> on "
                 "http://%s:%d (webhooks.listen) for %s", shown, port,
                 ", ".join(receiver.accounts) or "no account (none names a webhook secret)")

