"""Which subscribed topics BTSE left out of its acknowledgement (pure bookkeeping).

BTSE answers every ``subscribe`` frame with one ack listing the topics that succeeded; a topic
it does not serve on that endpoint (e.g. a book topic sent to a main URL, an unknown market) is
simply omitted and never delivers, with no error frame (reference §1.2, §2.3). The ack's
``channel`` order may differ from the request, and on OSS the first snapshot may arrive before
the ack.

:class:`AckTracker` keeps the outstanding subscribe requests of each connection. An ack
removes the topics it lists from the oldest request holding them and marks that request
answered; an empty ack marks the oldest unanswered request answered. ``grace`` seconds after
its first ack, whatever a request still misses was refused (the grace tolerates a server that
splits its acknowledgement over several frames). The collector records each refused topic once
instead of retrying it in a loop; a reconnect subscribes everything again, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class _Request:
    topics: list[str]  # still unacknowledged, in request order
    answered_at: float | None = None


@dataclass
class AckTracker:
    """Outstanding subscribe requests per connection (at most ``max_pending`` each)."""

    grace: float = 2.0
    max_pending: int = 1024
    _pending: dict[str, list[_Request]] = field(default_factory=dict)

    def sent(self, conn_id: str, topics: Iterable[str]) -> None:
        """A subscribe frame for ``topics`` went out on ``conn_id``."""
        request = list(dict.fromkeys(topics))
        if request:
            pending = self._pending.setdefault(conn_id, [])
            pending.append(_Request(request))
            del pending[: -self.max_pending]

    def acked(self, conn_id: str, topics: Iterable[str], now: float) -> None:
        """A subscribe ack listing ``topics`` arrived at ``now`` (monotonic seconds)."""
        pending = self._pending.get(conn_id)
        if not pending:
            return
        got = set(topics)
        if not got:  # an empty ack answers the oldest request not answered yet
            for request in pending:
                if request.answered_at is None:
                    request.answered_at = now
                    return
            return
        for request in pending:
            matched = got.intersection(request.topics)
            if matched:
                request.topics = [t for t in request.topics if t not in matched]
                got -= matched  # a topic in two requests (subscribe, resync): one ack each
                if request.answered_at is None:
                    request.answered_at = now
            if not got:
                break
        pending[:] = [r for r in pending if r.topics]

    def refused(self, now: float) -> list[tuple[str, str]]:
        """``(conn_id, topic)`` of every topic left out of an ack at least ``grace`` ago;
        each is returned once."""
        out: list[tuple[str, str]] = []
        for conn_id, pending in self._pending.items():
            keep = []
            for request in pending:
                if request.answered_at is not None and now - request.answered_at >= self.grace:
                    out.extend((conn_id, topic) for topic in request.topics)
                else:
                    keep.append(request)
            pending[:] = keep
        return out

    def reset(self, conn_id: str) -> list[str]:
        """The connection dropped: its outstanding requests will never be answered. Returns
        the topics an ack already left out (refused, even if the grace has not passed)."""
        pending = self._pending.pop(conn_id, [])
        return [t for r in pending if r.answered_at is not None for t in r.topics]

    def outstanding(self, conn_id: str) -> int:
        return len(self._pending.get(conn_id, ()))
