"""Log output: human-readable lines by default, one JSON object per line for log shippers.

``configure_logging(level, log_format)`` installs a single stderr handler on the root logger
(replacing one it installed before). A JSON line carries ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, for an exception ``exception`` (the formatted traceback), and the
context of the line as fields of their own (:data:`CONTEXT_FIELDS`: what the caller passed as
``extra``, and ``daemon``, the identity :func:`set_daemon` named)::

    {"time": "2026-11-22T05:30:00.123+00:00", "level": "WARNING", "logger": "poller.polling.poller",
     "message": "telnyx conference 3fa8… of account 'telnyx-main': poll failed (server_error) …",
     "provider": "telnyx", "account": "telnyx-main", "conference_id": "3fa8…",
     "kind": "server_error", "http_status": 503, "duration_ms": 41.7, "daemon": "poller-a"}

The text format is unchanged: the context is in the message already.

Nothing here looks at message contents: keeping secrets out of logs is the callers' job (they
log account names and environment-variable *names*, never credential values). httpx's
per-request INFO lines and APScheduler's per-run lines are held back below ``debug``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from poller.polling.report import TickReport

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
CHATTY_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING,
                  "apscheduler": logging.ERROR}
"""Libraries that log every request / job run at INFO (or 'job skipped' at WARNING)."""


CONTEXT_FIELDS = ("provider", "account", "conference_id", "kind", "http_status", "duration_ms",
                  "reason", "where", "daemon")
"""The context a log line may carry as JSON fields (``extra={...}`` of the logging call)."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (context fields included)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (without the newline)."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Daemon(logging.Filter):
    """Stamps every record with the daemon's identity (``daemon``)."""

    def __init__(self, identity: str) -> None:
        super().__init__()
        self.identity = identity

    def filter(self, record: logging.LogRecord) -> bool:
        record.daemon = self.identity
        return True


def set_daemon(identity: str) -> None:
    """Name this process's daemon identity on every line it logs from now on."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _PollerHandler):
            for old in [f for f in handler.filters if isinstance(f, _Daemon)]:
                handler.removeFilter(old)
            handler.addFilter(_Daemon(identity))


class _PollerHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (so a second call replaces it)."""


def configure_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Send log records at ``level`` and above to stderr, as text or JSON lines."""
    handler = _PollerHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
        TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PollerHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name, quiet in CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else quiet)


def log_tick(report: TickReport) -> None:
    """One line per tick that claimed something: INFO when it changed or failed anything,
    else DEBUG."""
    if not report.claimed:
        return
    eventful = (report.failures or report.transitions or report.member_events
                or report.retired or report.store_error)
    logging.getLogger("poller.daemon.service").log(
        logging.INFO if eventful else logging.DEBUG, "tick: %s", report.summary())
