"""The simulator's side of provider events: a signing key like a Telnyx account's, and the
request each provider would send.

Telnyx signs every webhook with the account's Ed25519 key over ``{timestamp}|{raw body}``
(headers ``telnyx-signature-ed25519``, base64, and ``telnyx-timestamp``, Unix seconds). The
simulator's key is fixed and simulator-only: its private half is derived from a public seed,
so anyone can sign as the simulator, which is exactly what tests want and why it must never
be a real account's. :data:`SIMULATOR_PUBLIC_KEY` is what ``poller simulate`` prints for
``webhook_public_key_env``.

Bandwidth sends its callbacks with HTTP Basic only after a challenge: the first attempt has
no ``Authorization``; on a ``401`` carrying ``WWW-Authenticate`` it sends the credentials
(:func:`basic_authorization`).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_SEED: Final = hashlib.sha256(b"poller simulator webhook signing key (not a secret)").digest()
SIMULATOR_SIGNING_KEY: Final = Ed25519PrivateKey.from_private_bytes(_SEED)
SIMULATOR_PUBLIC_KEY: Final = base64.b64encode(
    SIMULATOR_SIGNING_KEY.public_key().public_bytes_raw()).decode()
"""The public half, base64, as Telnyx's Mission Control shows an account's key."""

BANDWIDTH_WEBHOOK_USERNAME: Final = "sim-webhook-user"
BANDWIDTH_WEBHOOK_PASSWORD: Final = "sim-webhook-password"  # noqa: S105 (fake, simulator-only)


def telnyx_headers(body: bytes, timestamp: int,
                   key: Ed25519PrivateKey = SIMULATOR_SIGNING_KEY) -> dict[str, str]:
    """The headers Telnyx sends with ``body`` at Unix time ``timestamp``, signed by ``key``."""
    signature = key.sign(str(timestamp).encode() + b"|" + body)
    return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": str(timestamp), "content-type": "application/json"}


def basic_authorization(username: str = BANDWIDTH_WEBHOOK_USERNAME,
                        password: str = BANDWIDTH_WEBHOOK_PASSWORD) -> str:
    """The ``Authorization`` header value Bandwidth sends after the challenge."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
