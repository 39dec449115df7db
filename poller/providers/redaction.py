"""Keeping secrets out of everything that leaves the provider layer.

Secrets: every text that leaves the provider layer in an error (provider error details, body
excerpts, library error messages) passes through a ``Redactor`` that knows the account's
secrets: the API key, the Basic password, the OAuth2 client secret, every access token fetched,
and the Basic ``Authorization`` value built from them. The error raised is also *unchained*:
it is raised outside the ``except`` block, so neither ``__cause__`` nor ``__context__`` holds
the original. An httpx error keeps the request (``Authorization`` header included) and an
unredacted message, a ``JSONDecodeError`` the whole body, a parser's ``BadResponse`` an
unredacted excerpt; the translated error says what it needs (the library error's type and
redacted message) itself.

:class:`Redactor` masks the secrets it knows; :func:`parsed` / :func:`in_context` raise a
parser's context-free ``BadResponse`` again with context and a redacted excerpt.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TypeVar

from poller.errors import BadResponse
from poller.providers.fields import EXCERPT_CHARS
from poller.providers.status import ErrorContext

T = TypeVar("T")

MASK = "[redacted]"
_MIN_PARTIAL = 3
"""Shorter tails are not masked: they would match by chance and say nothing of the secret."""


class Redactor:
    """Replaces every known secret in a text by ``[redacted]``."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Remember one more secret (empty strings are ignored: they would mask everything)."""
        if secret:
            self._secrets.add(secret)

    def add_basic(self, username: str, password: str) -> str:
        """Remember a Basic credential pair and return its ``Authorization`` header value."""
        self.add(password)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.add(token)
        return f"Basic {token}"

    def __call__(self, text: str) -> str:
        """``text`` with every known secret masked, longest secrets first."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def cut(self, text: str, limit: int) -> str:
        """Redact, then cut to ``limit`` characters, never leaving part of a secret visible.

        Redaction comes first (so a secret straddling the cut is masked whole); then a tail
        that is the start of a secret (the text was already cut before it reached us) is
        masked too.
        """
        longest = max((len(s) for s in self._secrets), default=0)
        text = self(text[: limit + longest])[:limit]
        for secret in self._secrets:
            for length in range(min(len(secret) - 1, len(text)), _MIN_PARTIAL - 1, -1):
                if text.endswith(secret[:length]):
                    return text[:-length] + MASK
        return text


def parsed(parse: Callable[[], T], context: ErrorContext, redactor: Redactor) -> T:
    """What ``parse()`` returns; its context-free ``BadResponse`` is raised again with context
    and a redacted excerpt, unchained (the parser's own error holds the unredacted excerpt)."""
    try:
        return parse()
    except BadResponse as exc:
        error = in_context(exc, context, redactor)
    raise error


def in_context(error: BadResponse, context: ErrorContext, redactor: Redactor) -> BadResponse:
    """A parser's context-free ``BadResponse`` again, with context and a redacted excerpt."""
    return BadResponse(
        redactor(error.message),
        provider=context.provider,
        account=context.account,
        conference_id=context.conference_id,
        http_status=200,
        excerpt=redactor.cut(error.excerpt, EXCERPT_CHARS) if error.excerpt else None,
    )
