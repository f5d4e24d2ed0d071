"""BTSE WebSocket authentication signature (``authKeyExpires``).

signature = lower-case hex of HMAC-SHA384(key=api_secret, message=path + nonce), where path is
the server's auth path (``/ws/spot``, ``/ws/futures``, ``/ws/otc``) and nonce the current UTC
time in milliseconds, as a decimal string (reference §2.4).
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, path: str, nonce: str | int) -> str:
    """Hex HMAC-SHA384 of ``path + nonce`` keyed with ``secret``."""
    if not path.startswith("/"):
        raise ValueError(f"auth path must start with '/', got {path!r}")
    message = f"{path}{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha384).hexdigest()
