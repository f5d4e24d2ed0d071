"""Topic planning (pure): which topics go on which connection.

Topics are spread per server over as few connections as BTSE's per-connection topic limit
allows (100 documented), round-robin so that busy and quiet symbols mix. When BTSE answers
with error 1007 ("User message buffer is full") the connection carried too much: ``split``
moves half of its topics onto a new connection of the same server; the other connections
of that server are not touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_MAX_TOPICS = 100


@dataclass(frozen=True)
class ConnectionPlan:
    """One WebSocket connection: its id (``<server>#<n>``), server name and topics."""

    conn_id: str
    server: str
    topics: tuple[str, ...]


@dataclass
class Plan:
    """All connections; ``next_index`` keeps connection ids unique across splits."""

    connections: list[ConnectionPlan] = field(default_factory=list)
    next_index: dict[str, int] = field(default_factory=dict)

    def by_id(self, conn_id: str) -> ConnectionPlan:
        for conn in self.connections:
            if conn.conn_id == conn_id:
                return conn
        raise KeyError(f"no connection {conn_id!r} in the plan")

    def for_server(self, server: str) -> list[ConnectionPlan]:
        return [c for c in self.connections if c.server == server]


def plan(
    topics_by_server: Mapping[str, Sequence[str]],
    max_topics_per_connection: int = DEFAULT_MAX_TOPICS,
    min_connections: Mapping[str, int] | None = None,
) -> Plan:
    """Spread each server's topics over ``ceil(n / max)`` connections (at least
    ``min_connections[server]``, at most one per topic). Duplicate topics are kept once."""
    if max_topics_per_connection < 1:
        raise ValueError(f"max_topics_per_connection must be >= 1, got {max_topics_per_connection}")
    result = Plan()
    for server in sorted(topics_by_server):
        topics = list(dict.fromkeys(topics_by_server[server]))
        if not topics:
            continue
        n = max(
            math.ceil(len(topics) / max_topics_per_connection),
            (min_connections or {}).get(server, 1),
        )
        n = min(n, len(topics))
        buckets: list[list[str]] = [[] for _ in range(n)]
        for i, topic in enumerate(topics):
            buckets[i % n].append(topic)
        for i, bucket in enumerate(buckets):
            result.connections.append(ConnectionPlan(f"{server}#{i}", server, tuple(bucket)))
        result.next_index[server] = n
    return result


def split(current: Plan, conn_id: str) -> tuple[ConnectionPlan, ConnectionPlan] | None:
    """Move every other topic of ``conn_id`` to a new connection (after a 1007).

    Returns ``(kept, new)`` and updates ``current`` in place, or ``None`` when the connection
    has a single topic and cannot be split further.
    """
    old = current.by_id(conn_id)
    if len(old.topics) < 2:
        return None
    kept = ConnectionPlan(old.conn_id, old.server, old.topics[0::2])
    index = current.next_index.get(old.server, 0)
    new = ConnectionPlan(f"{old.server}#{index}", old.server, old.topics[1::2])
    current.next_index[old.server] = index + 1
    position = current.connections.index(old)
    current.connections[position] = kept
    current.connections.insert(position + 1, new)
    return kept, new


def topics_of(plans: Iterable[ConnectionPlan]) -> list[str]:
    return [t for p in plans for t in p.topics]
