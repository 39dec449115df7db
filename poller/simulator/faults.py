"""Fault injection: which requests fail, and how a failure reaches the client.

``FaultInjector.draw`` makes one seeded draw per provider request, so a given sequence of
requests always meets the same faults. ``answer_with_fault`` then turns the drawn fault into
what the client sees:

* ``RATE_LIMITED`` / ``SERVER_ERROR`` / ``UNAVAILABLE``: the provider's own error response
  (built by the provider module, with its headers);
* ``SLOW``: the normal answer after ``slow_delay_seconds`` of *real* time. Note that
  ``httpx.ASGITransport`` enforces no timeouts: an in-process client must bound the call itself
  (e.g. ``anyio.fail_after``) to see a timeout;
* ``RESET``: under uvicorn the TCP connection is aborted with ``SO_LINGER 0`` (an RST, no
  response bytes at all), which httpx reports as ``httpx.ReadError`` or
  ``httpx.RemoteProtocolError``. In-process there is no socket, so the app raises
  ``httpx.ReadError("… (simulated connection reset)")``, which ``ASGITransport`` re-raises to the
  caller (with ``raise_app_exceptions=False`` the caller gets a bare 500 instead);
* ``MALFORMED``: 200, ``application/json``, a body that is not JSON (an HTML proxy page);
* ``TRUNCATED``: the normal status and headers with the JSON body cut in half
  (``Content-Length`` matches the cut body, so HTTP-wise the response is complete).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import Response

from poller.simulator.config import FaultConfig, FaultKind

ABORT_EXTENSION = "poller.simulator.abort_connection"
"""ASGI scope extension under which ``SimulatorApp`` stores a callable that drops the client's
connection (present only under servers that expose their transport, i.e. uvicorn)."""

MALFORMED_BODY = (b"<html><head><title>502 Bad Gateway</title></head>"
                  b"<body><center><h1>502 Bad Gateway</h1></center></body></html>")


class FaultInjector:
    """Seeded per-request fault draws, with counts of what was injected."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 (reproducible, not secret)
        self._thresholds: list[tuple[float, FaultKind]] = []
        total = 0.0
        for kind in FaultKind:
            rate = config.rates.get(kind, 0.0)
            if rate > 0:
                total += rate
                self._thresholds.append((total, kind))
        self.requests = 0
        self.injected: Counter[FaultKind] = Counter()

    def draw(self) -> FaultKind | None:
        """The fault for the next request, or ``None`` for a normal answer."""
        self.requests += 1
        if not self._thresholds:
            return None
        roll = self._rng.random()
        for threshold, kind in self._thresholds:
            if roll < threshold:
                self.injected[kind] += 1
                return kind
        return None

    def stats(self) -> dict[str, Any]:
        """Requests seen and faults injected so far (for ``GET /_sim/stats``)."""
        return {
            "requests": self.requests,
            "faults": {kind.value: self.injected[kind] for kind in FaultKind},
        }


def connection_aborter(send: object) -> Callable[[], None] | None:
    """A callable that resets the client connection behind uvicorn's raw ASGI ``send``.

    uvicorn hands the app ``RequestResponseCycle.send``, a bound method whose object holds the
    asyncio transport. Anything else (``ASGITransport``, other servers) gives ``None``.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        return None

    def abort() -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, like a crashed proxy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    return abort


async def reset_connection(request: Request) -> Response:
    """Drop the connection (see the module docstring); returns only under uvicorn."""
    abort = request.scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        raise httpx.ReadError("Connection reset by peer (simulated connection reset)")
    abort()
    # Let the server notice the lost connection, so it discards the response below instead
    # of reporting an app that returned without answering.
    await asyncio.sleep(0)
    return Response(status_code=499)


async def answer_with_fault(
    fault: FaultKind | None,
    request: Request,
    config: FaultConfig,
    answer: Callable[[], Response],
    provider_error: Callable[[FaultKind], Response],
) -> Response:
    """The response for a request that drew ``fault`` (``None``: the normal ``answer()``)."""
    if fault is None:
        return answer()
    if fault in (FaultKind.RATE_LIMITED, FaultKind.SERVER_ERROR, FaultKind.UNAVAILABLE):
        return provider_error(fault)
    if fault is FaultKind.RESET:
        return await reset_connection(request)
    if fault is FaultKind.SLOW:
        await anyio.sleep(config.slow_delay_seconds)
        return answer()
    if fault is FaultKind.MALFORMED:
        return Response(MALFORMED_BODY, status_code=200, media_type="application/json")
    normal = answer()
    body = bytes(normal.body)
    headers = {k: v for k, v in normal.headers.items() if k.lower() != "content-length"}
    return Response(body[: len(body) // 2], status_code=normal.status_code, headers=headers)
