"""The one exception tree of poller.

::

    PollerError
    ├── ConfigError                 bad config file or missing secret (CLI exits 2)
    │   ├── IdentityInUse           a live daemon runs under this [daemon] identity
    │   ├── SchemaAhead             the database was migrated by a newer poller
    │   └── SpoolInUse              every slot of this [spool] path is held by a live process
    ├── InvalidConferenceId         an ID that cannot be sent as one URL path segment
    ├── ProviderError               a poll failed; carries provider, account, conference, status
    │   ├── NotFound                404 (keeps the provider code, e.g. Telnyx "90058")
    │   ├── AuthFailed              401 / 403, or the OAuth2 token endpoint refused us
    │   ├── RateLimited             429, with ``retry_after_seconds`` when the provider said
    │   ├── Transient               worth retrying later
    │   │   ├── ServerError         5xx
    │   │   ├── Timeout             connect / read / pool timeouts
    │   │   └── NetworkError        connection refused / reset, protocol errors
    │   └── BadResponse             not JSON, wrong shape, too large (``excerpt`` kept)
    ├── Internal                    a bug of poller's own met while polling (never the provider's)
    ├── StoreUnavailable            the database cannot be used (e.g. not migrated)
    │   └── StoreDown               … for now: no answer, locked, read-only, full
    ├── WebhookRejected             a pushed event refused: bad signature, credentials, body
    ├── AlreadyRunning              another poller holds the SQLite file (CLI exits 1)
    ├── IdentityLost                another process took over this daemon's identity (exits 1)
    └── NotWatched                  ``poller watch remove`` of something it cannot remove

Library errors (httpx, SQLAlchemy) are translated into this tree once, at the boundary that
calls the library. A ``ProviderError`` is raised *unchained* (no ``__cause__``, no
``__context__``): an httpx error holds the request, ``Authorization`` header included, and a
parser's or JSON decoder's error the unredacted body, so the translated error names the library
error in its redacted message instead. Every ``ProviderError`` has a ``kind`` matching the
``poll_error.kind`` column; so does :class:`Internal` (``internal``), which the tick records
when a poll raises something no one expected: our own bug, kept apart from the provider's
``bad_response`` in ``poll_error``, the metrics and the logs.
"""

from __future__ import annotations

from typing import ClassVar


class PollerError(Exception):
    """Base of every error poller raises on purpose."""


class ConfigError(PollerError):
    """The configuration is invalid. ``key`` names the offending key (dotted path)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InvalidConferenceId(PollerError, ValueError):
    """A conference ID that poller refuses to put into a URL."""


class StoreUnavailable(PollerError):
    """The database cannot be used: it is not at this poller's schema, or :class:`StoreDown`."""


class StoreDown(StoreUnavailable):
    """The database could not be reached or a transaction could not be committed: waiting may
    cure it (the daemon spools meanwhile, and starts spooling when it starts with it down)."""


class AlreadyRunning(PollerError):
    """Another poller process holds the SQLite database (the CLI exits 1)."""


class IdentityInUse(ConfigError):
    """Another live daemon runs under this ``[daemon] identity`` (the CLI exits 2)."""


class SchemaAhead(ConfigError):
    """The database's schema revision is newer than this poller knows (the CLI exits 2)."""


class SpoolInUse(ConfigError):
    """Every slot of the ``[spool]`` directory is held by a live process (the CLI exits 2)."""


class IdentityLost(PollerError):
    """A running daemon found its identity registered by another process and stopped (the CLI
    exits 1, so a supervisor's ``Restart=on-failure`` starts it again)."""


class WebhookRejected(PollerError):
    """A webhook request refused before anything of it is stored.

    ``reason`` labels the metric (``bad_signature``, ``stale_timestamp``, ``malformed``, …);
    ``status`` is the HTTP status to answer with.
    """

    def __init__(self, message: str, *, reason: str, status: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class NotWatched(PollerError):
    """``poller watch remove`` of a target that is not there or cannot be removed (exit 1)."""


class Internal(PollerError):
    """An unexpected exception while polling: a bug of poller's own, not the provider's fault.

    The tick records it as a failed poll of ``kind`` ``internal`` (retried with backoff like a
    transient failure) and logs the traceback; one bug never stops the tick.
    """

    kind: ClassVar[str] = "internal"


class ProviderError(PollerError):
    """A request to a provider failed. Subclasses say how; ``kind`` is the stored name.

    Every attribute is ``None`` where it does not apply or is not known:

    * ``message``: short and secret-free (what ``PollFailure.message`` stores);
    * ``provider``, ``account``, ``conference_id``: who was asked about what;
    * ``http_status``, ``provider_code``: the answer's status and the provider's error code
      (Telnyx ``errors[0].code``, Bandwidth ``type``, OAuth2 ``error``);
    * ``retry_after_seconds``: the wait the provider asked for (429, sometimes 503);
    * ``excerpt``: the start of an unreadable body (``BadResponse``), secrets masked.
    """

    kind: ClassVar[str] = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        account: str | None = None,
        conference_id: str | None = None,
        http_status: int | None = None,
        provider_code: str | None = None,
        retry_after_seconds: float | None = None,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.account = account
        self.conference_id = conference_id
        self.http_status = http_status
        self.provider_code = provider_code
        self.retry_after_seconds = retry_after_seconds
        self.excerpt = excerpt

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("account", self.account),
                ("conference", self.conference_id),
                ("http_status", self.http_status),
                ("code", self.provider_code),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message


class NotFound(ProviderError):
    """The provider does not know the conference (HTTP 404)."""

    kind = "not_found"


class AuthFailed(ProviderError):
    """The provider refused our credentials (HTTP 401 / 403, or the token endpoint said no)."""

    kind = "auth"


class RateLimited(ProviderError):
    """HTTP 429. ``retry_after_seconds`` is the provider's requested wait, if it gave one."""

    kind = "rate_limited"


class Transient(ProviderError):
    """A failure that may well go away on its own: retry later with backoff."""

    kind = "transient"


class ServerError(Transient):
    """HTTP 5xx."""

    kind = "server_error"


class Timeout(Transient):
    """The provider did not answer in time."""

    kind = "timeout"


class NetworkError(Transient):
    """The connection failed (refused, reset, broken protocol)."""

    kind = "network"


class BadResponse(ProviderError):
    """The provider answered something poller cannot read. ``excerpt`` keeps its start."""

    kind = "bad_response"
