"""Test helper: a real systemd-style notify socket (used through the ``notify_listener`` fixture)."""

from __future__ import annotations

import socket
from pathlib import Path


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's ``$NOTIFY_SOCKET``.

    ``env`` is what to pass to ``Notifier(environ=...)`` (or the daemon); ``drain()`` returns
    the messages received so far. The kernel queues only ~10 datagrams per socket by default
    (``net.unix.max_dgram_qlen``), so drain often in long runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.received: list[str] = []

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.path}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                return list(self.received)

    def close(self) -> None:
        self.sock.close()
