"""The systemd notify protocol (``sd_notify(3)``), written out: one datagram per message.

``Notifier()`` reads ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for an abstract socket)
and sends ``READY=1``, ``STATUS=…``, ``WATCHDOG=1`` and ``STOPPING=1`` as ``KEY=value`` lines
over an ``AF_UNIX`` datagram socket. Without ``$NOTIFY_SOCKET`` (not started by systemd) every
call is a no-op. A send failure is logged once and never raised: a collector must not stop
because its supervisor went away.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # Linux abstract namespace
    return path


class Notifier:
    """Sends notifications to systemd; a no-op when ``$NOTIFY_SOCKET`` is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._env = dict(env)
        self._path = env.get("NOTIFY_SOCKET") or None
        self._sock: socket.socket | None = None
        self._failed = False
        self.sent: int = 0

    @property
    def enabled(self) -> bool:
        return self._path is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True if it was sent."""
        if self._path is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                if self._path[0] not in "/@":
                    raise OSError(
                        f"NOTIFY_SOCKET must be an absolute path or @name: {self._path!r}"
                    )
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(payload, _address(self._path))
        except OSError as exc:
            if not self._failed:
                log.warning("sd_notify_failed", socket=self._path, error=str(exc))
            self._failed = True
            return False
        if self._failed:
            log.info("sd_notify_recovered", socket=self._path)
            self._failed = False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (startup finished), optionally with a status line."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """``STATUS=…``: one human-readable line shown by ``systemctl status``."""
        return self.notify(_status_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: we are alive and healthy (send only while healthy)."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        lines = ["STOPPING=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.notify(*lines)

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, or ``None`` when
        the watchdog is off or meant for another process (``$WATCHDOG_PID`` not ours)."""
        usec = self._env.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            log.warning("watchdog_usec_invalid", value=usec)
            return None
        if value <= 0:
            return None
        return value / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line, no embedded newlines
