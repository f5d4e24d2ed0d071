"""From the config's streams to topics per server, and the client frames of each server.

Topic strings come from the spec registry (``server_for`` + ``render``), never from our own
strings. OTC has no topics: each configured quote request gets a stable key
(``quote:<symbol>:<quantity>:<currency>:<side>:<clOrderId>``) that plays the part of a topic
for planning and resubscription; :class:`QuoteFrames` turns keys into ``quote`` ops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from collector.config import Config, Credentials, OtcQuoteConfig, StreamSpec
from collector.feed.connection import login_result
from collector.protocol import frames
from collector.specs import SpecRegistry


@dataclass(frozen=True)
class Topic:
    """One subscription: the stream it serves, its server and topic string."""

    stream: StreamSpec
    server: str
    topic: str


@dataclass
class Subscriptions:
    topics: list[Topic] = field(default_factory=list)
    otc_requests: dict[str, OtcQuoteConfig] = field(default_factory=dict)

    def by_server(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self.topics:
            out.setdefault(t.server, []).append(t.topic)
        return out


def otc_key(q: OtcQuoteConfig) -> str:
    return f"quote:{q.symbol}:{q.quantity:g}:{q.currency}:{q.side or 'both'}:{q.cl_order_id or ''}"


def subscriptions(config: Config, registry: SpecRegistry) -> Subscriptions:
    """Every topic the config asks for, with the server that serves it."""
    subs = Subscriptions()
    env = config.environment
    for stream in config.streams():
        if stream.kind == "otc_quote":
            continue
        server = registry.server_for(stream.product, stream.kind, env)
        channel = registry.channel(stream.product, stream.kind)
        params: dict[str, object] = {}
        if "symbol" in channel.param_names:
            params["symbol"] = stream.symbol
        if "grouping" in channel.param_names:
            params["grouping"] = stream.grouping or 0
        subs.topics.append(Topic(stream, server.name, registry.render(channel, **params)))
    if config.otc is not None and config.otc.quotes:
        server = registry.server_for("otc", "otc_quote", env)
        for q in config.otc.quotes:
            key = otc_key(q)
            subs.otc_requests[key] = q
            subs.topics.append(Topic(StreamSpec("otc", "otc_quote", q.symbol), server.name, key))
    return subs


def server_urls(config: Config, registry: SpecRegistry) -> dict[str, str]:
    """URL per server name: the spec's, or the config's ``endpoints`` override."""
    urls = {s.name: s.url for s in registry.servers(environment=config.environment)}
    urls.update(config.endpoints)
    return urls


class SubscribeFrames:
    """Spot/futures: ``{"op": "subscribe", "args": [...]}``."""

    def subscribe(self, topics: Sequence[str]) -> list[str]:
        return [frames.subscribe(topics)] if topics else []

    def unsubscribe(self, topics: Sequence[str]) -> list[str]:
        return [frames.unsubscribe(topics)] if topics else []


class QuoteFrames:
    """OTC: one ``quote`` / ``unsubscribe-quote`` op per configured quote request."""

    def __init__(self, requests: Mapping[str, OtcQuoteConfig]) -> None:
        self.requests = dict(requests)

    def subscribe(self, topics: Sequence[str]) -> list[str]:
        out = []
        for key in topics:
            q = self.requests[key]
            out.append(
                frames.otc_quote(
                    q.symbol, q.quantity, q.currency, side=q.side, cl_order_id=q.cl_order_id
                )
            )
        return out

    def unsubscribe(self, topics: Sequence[str]) -> list[str]:
        out = []
        for key in topics:
            q = self.requests[key]
            out.append(
                frames.otc_unsubscribe_quote(
                    q.symbol, q.quantity, q.currency, cl_order_id=q.cl_order_id
                )
            )
        return out


class KeyAuth:
    """``authKeyExpires`` signed with the API secret for the server's auth path."""

    def __init__(self, credentials: Credentials, auth_path: str) -> None:
        self._credentials = credentials
        self.auth_path = auth_path

    def auth_frame(self) -> str:
        nonce_ms = time.time_ns() // 1_000_000
        c = self._credentials
        return frames.auth_key_expires(c.api_key, c.api_secret, self.auth_path, nonce_ms)

    def login_result(self, data: str | bytes) -> bool | None:
        return login_result(data)

    def __repr__(self) -> str:
        return f"KeyAuth(path={self.auth_path!r})"
