"""Which subscribed topics BTSE left out of its acknowledgement (pure bookkeeping).

BTSE answers every ``subscribe`` frame with one ack listing the topics that succeeded; a topic
it does not serve on that endpoint (e.g. a book topic sent to a main URL, an unknown market) is
simply omitted and never delivers, with no error frame (reference §1.2, §2.3). The ack's
``channel`` order may differ from the request, and on OSS the first snapshot may arrive before
the ack. :class:`AckTracker` pairs each ack with the subscribe request it answers (the oldest
outstanding request of that connection sharing a topic with the ack; an empty ack answers the
oldest) and returns the topics that were left out, so the collector records them once instead
of retrying them in a loop (a reconnect subscribes everything again, once).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class AckTracker:
    """Outstanding subscribe requests per connection; bounded (oldest dropped)."""

    def __init__(self, max_pending: int = 1024) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, deque[tuple[str, ...]]] = {}

    def sent(self, conn_id: str, topics: Iterable[str]) -> None:
        """A subscribe frame for ``topics`` went out on ``conn_id``."""
        request = tuple(topics)
        if request:
            pending = self._pending.setdefault(conn_id, deque(maxlen=self.max_pending))
            pending.append(request)

    def acked(self, conn_id: str, topics: Iterable[str]) -> tuple[str, ...]:
        """A subscribe ack listing ``topics``: the topics of its request that were left out."""
        pending = self._pending.get(conn_id)
        if not pending:
            return ()
        got = set(topics)
        index = 0
        if got:
            index = next((i for i, req in enumerate(pending) if got.intersection(req)), 0)
        request = pending[index]
        del pending[index]
        return tuple(t for t in request if t not in got)

    def reset(self, conn_id: str) -> None:
        """The connection dropped: its outstanding requests will never be answered."""
        self._pending.pop(conn_id, None)

    def outstanding(self, conn_id: str) -> int:
        return len(self._pending.get(conn_id, ()))
