"""The spec model: frozen types for what BTSE's AsyncAPI files declare.

Servers, topic channels (with their parameters and wire variants), control channels and
messages, as :mod:`collector.specs.loader` builds them from ``specs/*.asyncapi.yaml`` and
:class:`collector.specs.registry.SpecRegistry` serves them. Pure: no I/O here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias

ENV_SPECS_DIR = "BTSE_COLLECTOR_SPECS"

#: The channel kinds each product's spec must declare (non-deprecated): what the collector uses.
REQUIRED_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "spot": ("book", "l1", "trades", "notifications", "fills"),
        "futures": ("book", "l1", "trades", "notifications", "fills", "positions", "all_positions"),
        "otc": ("otc_quote",),
    }
)
#: The control channels every spec must declare.
REQUIRED_CONTROLS: tuple[str, ...] = ("subscription", "heartbeat", "authentication")

ServerKind: TypeAlias = Literal["main", "oss"]
Environment: TypeAlias = Literal["production", "testnet"]
SERVER_KINDS: tuple[str, ...] = ("main", "oss")
ENVIRONMENTS: tuple[str, ...] = ("production", "testnet")
CONTROL_NAMES: tuple[str, ...] = ("subscription", "heartbeat", "authentication")

#: A ``{parameter}`` of a topic template.
PARAM_RE = re.compile(r"\{([A-Za-z0-9_-]+)\}")


class _SpecIdentity:
    """Equality and hash by the spec identity named in ``_identity`` (e.g. product + name).

    Messages and channels are compared often (dict keys, sets of channels) and hold unhashable
    schemas, so they are equal when they name the same spec object, not field by field.
    """

    __slots__ = ()
    _identity: ClassVar[tuple[str, ...]]

    def _key(self) -> tuple[object, ...]:
        return (type(self).__name__, *(getattr(self, name) for name in self._identity))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class Server:
    """One WebSocket endpoint, named as in the spec (``spot``, ``futures_oss_testnet``...)."""

    name: str
    product: str
    kind: ServerKind
    environment: Environment
    url: str
    path: str  # "/ws/oss/spot"
    auth_path: str | None  # the path signed by authKeyExpires; None where auth is not served
    description: str = ""


@dataclass(frozen=True)
class Example:
    """One example of a message, with where it comes from (``[wire]``, ``[doc-new]``...).

    ``text`` is the frame as it travels (compact JSON, or the bare text of a text/plain
    message such as ``pong``); ``payload`` decodes a fresh copy of it.
    """

    name: str
    summary: str
    text: str
    is_json: bool = True

    @property
    def payload(self) -> Any:
        return json.loads(self.text) if self.is_json else self.text


@dataclass(frozen=True, eq=False)
class Message(_SpecIdentity):
    """A message (components.messages) with its payload JSON Schema (refs inlined).

    Equal and hashed by ``(product, name)``.
    """

    _identity = ("product", "name")

    product: str
    name: str
    title: str
    content_type: str
    payload_schema: Mapping[str, Any]
    examples: tuple[Example, ...]
    source: tuple[str, str] = ("", "$")  # (spec file, JSON path of the message)

    def __repr__(self) -> str:
        return f"Message({self.product}:{self.name})"


@dataclass(frozen=True, eq=False)
class Parameter:
    """A topic template parameter (``symbol``, ``grouping``) and its string schema."""

    name: str
    pattern: str  # anchored, e.g. "^[0-8]$"
    description: str
    schema: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Parameter({self.name}: {self.pattern})"


@dataclass(frozen=True)
class TopicVariant:
    """Another topic spelling of a channel seen on the wire (bare, ungrouped, grouped L1)."""

    template: str
    defaults: tuple[tuple[str, str], ...]  # channel params the variant leaves out, with values
    description: str
    parameters: tuple[Parameter, ...] = field(default=(), compare=False)  # in template order


@dataclass(frozen=True, eq=False)
class Channel(_SpecIdentity):
    """A topic channel: template, parameters, servers, auth and the payload of its frames.

    Equal and hashed by ``(product, template)``.
    """

    _identity = ("product", "template")

    product: str
    kind: str  # the collector's channel name: book, l1, trades, otc_quote, notifications, ...
    template: str  # the AsyncAPI channel key, e.g. "update:{symbol}_{grouping}"
    parameters: tuple[Parameter, ...]
    servers: tuple[str, ...]  # server names (both environments)
    server_kinds: tuple[str, ...]  # ("oss",) or ("main",)
    auth_required: bool
    deprecated: bool
    message: Message  # the server -> client data message
    variants: tuple[TopicVariant, ...] = ()
    deprecation: str | None = None
    description: str = ""
    notes: tuple[str, ...] = ()

    @property
    def payload_schema(self) -> Mapping[str, Any]:
        return self.message.payload_schema

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def __repr__(self) -> str:
        return f"Channel({self.product}:{self.template} kind={self.kind})"


@dataclass(frozen=True, eq=False)
class Control:
    """A control channel: what the client sends and what the server answers."""

    product: str
    name: str  # subscription | heartbeat | authentication
    servers: tuple[str, ...]
    sends: tuple[Message, ...]  # client -> server (AsyncAPI publish)
    receives: tuple[Message, ...]  # server -> client (AsyncAPI subscribe)
    description: str = ""

    def __repr__(self) -> str:
        return f"Control({self.product}:{self.name})"


@dataclass(frozen=True)
class TopicMatch:
    """What :meth:`SpecRegistry.match_topic` found for a topic string.

    ``params`` holds the channel's parameters (defaults filled in for a variant that leaves
    one out; a bare topic has none); ``variant`` is the variant template, None for the channel's
    own; ``extra`` holds parameters of the variant that the channel does not have (the grouping
    of a grouped ``snapshotL1``).
    """

    channel: Channel
    params: Mapping[str, str] = field(compare=False)
    variant: str | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)
