"""The spec registry: BTSE's AsyncAPI 2.6.0 files in ``specs/`` as typed, frozen objects.

Pure code: reads the spec files and nothing else (no asyncio, no sockets). Everything else in
btse-collector asks this registry which servers exist, which server serves a topic, how a topic
string is built and parsed, and what a message must look like::

    reg = load_registry()                                   # <repo>/specs or $BTSE_COLLECTOR_SPECS
    book = reg.channel("spot", "book")                      # Channel 'update:{symbol}_{grouping}'
    reg.server_for("spot", "book").url                      # 'wss://ws.btse.com/ws/oss/spot'
    reg.render(book, symbol="BTC-USD", grouping=0)          # 'update:BTC-USD_0'
    reg.match("spot", "update:BTC-USD_0")                   # (book, {'symbol': 'BTC-USD', 'grouping': '0'})
    reg.validate(book, frame)                               # raises SpecValidationError(message, path)

Spec conventions (see ``specs/README.md``): a channel key is a topic template whose
``{parameters}`` are declared with a string schema whose ``pattern`` is anchored (``^...$``) and
free of look-arounds, so that templates compile to one regular expression. Topic channels carry
``x-btse-kind`` (the collector's channel name), ``x-btse-auth-required`` and, when deprecated,
``deprecated: true`` plus ``x-btse-deprecated`` (why, and what replaces it). Other topic spellings
seen on the wire are ``x-btse-topic-variants`` of a channel. Control channels (subscription,
heartbeat, authentication) carry ``x-btse-control`` instead. Servers carry ``x-btse-kind``
(main|oss), ``x-btse-environment`` (production|testnet) and, for main servers,
``x-btse-auth-path`` (the path signed by authKeyExpires).

Payload validators are compiled with fastjsonschema on first use and cached, so that
:meth:`SpecRegistry.validate` is cheap enough for sampling on the hot path.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeAlias
from urllib.parse import urlsplit

import fastjsonschema
import yaml

from collector.errors import SpecError, SpecLookupError, SpecValidationError, TopicError

__all__ = [
    "ENV_SPECS_DIR",
    "REQUIRED_KINDS",
    "Channel",
    "Control",
    "Example",
    "Message",
    "Parameter",
    "Server",
    "SpecRegistry",
    "TopicMatch",
    "TopicVariant",
    "default_specs_dir",
    "load_registry",
]

ENV_SPECS_DIR = "BTSE_COLLECTOR_SPECS"
SPEC_GLOB = "*.asyncapi.yaml"
ASYNCAPI_VERSION = "2.6.0"

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

Validator: TypeAlias = Callable[[Any], Any]
_PARAM_RE = re.compile(r"\{([A-Za-z0-9_-]+)\}")
_MATCH_CACHE_LIMIT = 65536
# libyaml's safe loader when PyYAML was built with it (5x faster than the pure-Python one)
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_specs_dir() -> Path:
    """``$BTSE_COLLECTOR_SPECS`` if set, else ``specs/`` at the root of this repository."""
    env = os.environ.get(ENV_SPECS_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "specs"


# --------------------------------------------------------------------------- public types


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
class Message:
    """A message (components.messages) with its payload JSON Schema (refs inlined)."""

    product: str
    name: str
    title: str
    content_type: str
    payload_schema: Mapping[str, Any]
    examples: tuple[Example, ...]
    source: tuple[str, str] = ("", "$")  # (spec file, JSON path of the message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.product, self.name) == (other.product, other.name)

    def __hash__(self) -> int:
        return hash(("message", self.product, self.name))

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
class Channel:
    """A topic channel: template, parameters, servers, auth and the payload of its frames."""

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Channel):
            return NotImplemented
        return (self.product, self.template) == (other.product, other.template)

    def __hash__(self) -> int:
        return hash(("channel", self.product, self.template))

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


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    channel: Channel
    variant: TopicVariant | None
    params: tuple[Parameter, ...]


class SpecRegistry:
    """The three BTSE specs, loaded and checked. Build it with :func:`load_registry`."""

    def __init__(
        self,
        servers: Iterable[Server],
        channels: Iterable[Channel],
        controls: Iterable[Control],
        messages: Iterable[Message],
        files: Mapping[str, Path],
    ) -> None:
        self._servers: dict[str, Server] = {s.name: s for s in servers}
        self._channels: tuple[Channel, ...] = tuple(channels)
        self._controls: dict[tuple[str, str], Control] = {(c.product, c.name): c for c in controls}
        self._messages: dict[tuple[str, str], Message] = {(m.product, m.name): m for m in messages}
        self.files: Mapping[str, Path] = MappingProxyType(dict(files))
        self.products: tuple[str, ...] = tuple(sorted(self.files))
        self._by_kind: dict[tuple[str, str], Channel] = {}
        for ch in self._channels:
            if not ch.deprecated:
                self._by_kind[(ch.product, ch.kind)] = ch
        self._patterns: dict[str, dict[str, list[_Pattern]]] = {p: {} for p in self.products}
        for ch in self._channels:
            for pat in _channel_patterns(ch):
                prefix = _literal_prefix(pat.variant.template if pat.variant else ch.template)
                self._patterns[ch.product].setdefault(prefix, []).append(pat)
        self._match_cache: dict[tuple[str, str], TopicMatch | None] = {}
        self._validators: dict[int, Validator] = {}

    # ---- products and servers

    def server(self, name: str) -> Server:
        try:
            return self._servers[name]
        except KeyError:
            raise SpecLookupError("server", name, tuple(sorted(self._servers))) from None

    def servers(
        self, product: str | None = None, environment: str | None = None
    ) -> tuple[Server, ...]:
        if product is not None:
            self._check_product(product)
        if environment is not None and environment not in ENVIRONMENTS:
            raise SpecLookupError("environment", environment, ENVIRONMENTS)
        return tuple(
            s
            for s in self._servers.values()
            if (product is None or s.product == product)
            and (environment is None or s.environment == environment)
        )

    def server_for(self, product: str, kind: str, environment: str = "production") -> Server:
        """The server that serves the channel ``kind`` of ``product`` in ``environment``."""
        ch = self.channel(product, kind)
        if environment not in ENVIRONMENTS:
            raise SpecLookupError("environment", environment, ENVIRONMENTS)
        for name in ch.servers:
            server = self._servers[name]
            if server.environment == environment:
                return server
        raise SpecLookupError(f"{environment} server for {product} {kind}", kind, tuple(ch.servers))

    # ---- channels

    def channel(self, product: str, kind: str) -> Channel:
        """The current (non-deprecated) channel of that kind, e.g. ``("spot", "book")``."""
        self._check_product(product)
        try:
            return self._by_kind[(product, kind)]
        except KeyError:
            valid = tuple(sorted(k for p, k in self._by_kind if p == product))
            raise SpecLookupError(f"{product} channel", kind, valid) from None

    def channels(
        self, product: str | None = None, *, include_deprecated: bool = True
    ) -> tuple[Channel, ...]:
        if product is not None:
            self._check_product(product)
        return tuple(
            c
            for c in self._channels
            if (product is None or c.product == product)
            and (include_deprecated or not c.deprecated)
        )

    def kinds(self, product: str) -> tuple[str, ...]:
        """The channel kinds ``product`` serves (non-deprecated), sorted."""
        self._check_product(product)
        return tuple(sorted(k for p, k in self._by_kind if p == product))

    def render(self, channel: Channel, **params: object) -> str:
        """The topic string of ``channel`` for ``params``; every value is checked."""
        names = channel.param_names
        unknown = sorted(set(params) - set(names))
        missing = [n for n in names if n not in params]
        if unknown or missing:
            raise TopicError(
                channel.template,
                f"parameters must be exactly {list(names)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else ""),
            )
        values: dict[str, str] = {}
        for p in channel.parameters:
            value = params[p.name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise TopicError(channel.template, f"{p.name} must be a string or an integer")
            text = str(value)
            if not self._param_ok(p, text):
                raise TopicError(channel.template, f"{p.name}={text!r} does not match {p.pattern}")
            values[p.name] = text
        return _PARAM_RE.sub(lambda m: values[m.group(1)], channel.template)

    def match(self, product: str, topic: str) -> tuple[Channel, dict[str, str]] | None:
        """``(channel, params)`` for an incoming topic string, or None if no channel has it."""
        found = self.match_topic(product, topic)
        if found is None:
            return None
        return found.channel, dict(found.params)

    def match_topic(self, product: str, topic: str) -> TopicMatch | None:
        """Like :meth:`match`, with the variant that matched and its extra parameters."""
        key = (product, topic)
        try:
            return self._match_cache[key]
        except KeyError:
            pass
        patterns = self._patterns.get(product)
        if patterns is None:
            self._check_product(product)
            return None
        result = self._match_uncached(patterns.get(_literal_prefix(topic), ()), topic)
        if len(self._match_cache) >= _MATCH_CACHE_LIMIT:
            self._match_cache.clear()
        self._match_cache[key] = result
        return result

    def _match_uncached(self, candidates: Iterable[_Pattern], topic: str) -> TopicMatch | None:
        for pat in candidates:
            m = pat.regex.fullmatch(topic)
            if m is None:
                continue
            captured = m.groupdict()
            if not all(self._param_ok(p, captured[p.name]) for p in pat.params):
                continue
            own = set(pat.channel.param_names)
            params = {k: v for k, v in captured.items() if k in own}
            if pat.variant is not None:
                for name, value in pat.variant.defaults:
                    params.setdefault(name, value)
            extra = {k: v for k, v in captured.items() if k not in own}
            return TopicMatch(
                pat.channel,
                MappingProxyType(params),
                pat.variant.template if pat.variant else None,
                MappingProxyType(extra),
            )
        return None

    # ---- messages and validation

    def control(self, product: str, name: str) -> Control:
        """A control channel of ``product``: subscription, heartbeat, authentication."""
        self._check_product(product)
        try:
            return self._controls[(product, name)]
        except KeyError:
            valid = tuple(sorted(n for p, n in self._controls if p == product))
            raise SpecLookupError(f"{product} control channel", name, valid) from None

    def message(self, product: str, name: str) -> Message:
        """A message by its components.messages name, e.g. ``("spot", "subscriptionAck")``."""
        self._check_product(product)
        try:
            return self._messages[(product, name)]
        except KeyError:
            valid = tuple(sorted(n for p, n in self._messages if p == product))
            raise SpecLookupError(f"{product} message", name, valid) from None

    def messages(self, product: str | None = None) -> tuple[Message, ...]:
        if product is not None:
            self._check_product(product)
        return tuple(m for m in self._messages.values() if product is None or m.product == product)

    def validator(self, target: Channel | Message) -> Validator:
        """The compiled fastjsonschema validator of a channel's (or a message's) payload."""
        message = target.message if isinstance(target, Channel) else target
        key = id(message)
        fn = self._validators.get(key)
        if fn is None:
            try:
                fn = _compile(message.payload_schema)
            except fastjsonschema.JsonSchemaDefinitionException as exc:
                file, where = message.source
                raise SpecError(
                    file, f"{where}.payload", f"not a valid JSON Schema: {exc}"
                ) from None
            self._validators[key] = fn
        return fn

    def compile_all(self) -> int:
        """Compile every payload validator now (they are otherwise compiled on first use).

        Raises :class:`SpecError` for a payload that is not a valid JSON Schema. Returns how many
        validators were compiled. Use it where failing early beats starting fast (check-config).
        """
        for message in self._messages.values():
            self.validator(message)
        return len(self._messages)

    def validate(self, target: Channel | Message, payload: Any) -> None:
        """Check a decoded frame against the payload schema; raises SpecValidationError."""
        try:
            self.validator(target)(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            message = target.message if isinstance(target, Channel) else target
            raise SpecValidationError(
                _clean_message(exc.message),
                _json_path(exc.path),
                f"{message.product}:{message.name}",
            ) from None

    # ---- helpers

    def _param_ok(self, param: Parameter, value: str) -> bool:
        key = id(param)
        fn = self._validators.get(key)
        if fn is None:
            fn = _compile(param.schema)
            self._validators[key] = fn
        try:
            fn(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def _check_product(self, product: str) -> None:
        if product not in self.files:
            raise SpecLookupError("product", product, self.products)


def _compile(schema: Mapping[str, Any]) -> Validator:
    fn: Validator = fastjsonschema.compile(
        _thaw(schema), use_default=False, use_formats=False, detailed_exceptions=True
    )
    return fn


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _clean_message(text: str) -> str:
    # fastjsonschema names the root "data"; our paths start at "$"
    return text.replace("data.", "$.", 1) if text.startswith("data.") else text


def _json_path(path: Iterable[str | int] | None) -> str:
    out = "$"
    for i, part in enumerate(path or ()):
        if i == 0 and part == "data":
            continue
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def _literal_prefix(template: str) -> str:
    """The topic name before ``:`` (or the whole literal topic): the match index key."""
    head = template.split(":", 1)[0]
    return head.split("{", 1)[0]


def _channel_patterns(ch: Channel) -> list[_Pattern]:
    out = [_Pattern(_template_regex(ch.template, ch.parameters), ch, None, ch.parameters)]
    for variant in ch.variants:
        regex = _template_regex(variant.template, variant.parameters)
        out.append(_Pattern(regex, ch, variant, variant.parameters))
    return out


def _template_regex(template: str, parameters: Iterable[Parameter]) -> re.Pattern[str]:
    params = {p.name: p for p in parameters}
    parts: list[str] = []
    pos = 0
    for m in _PARAM_RE.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        body = params[m.group(1)].pattern[1:-1]
        parts.append(f"(?P<{m.group(1)}>{body})")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


# --------------------------------------------------------------------------- loading


def load_registry(specs_dir: Path | str | None = None) -> SpecRegistry:
    """Load and check every ``*.asyncapi.yaml`` in ``specs_dir`` (default: :func:`default_specs_dir`).

    Raises :class:`SpecError` naming the file and the JSON path of the first problem.
    """
    directory = Path(specs_dir) if specs_dir is not None else default_specs_dir()
    files = sorted(directory.glob(SPEC_GLOB))
    if not files:
        raise SpecError(str(directory), "$", f"no {SPEC_GLOB} files in this folder")
    servers: list[Server] = []
    channels: list[Channel] = []
    controls: list[Control] = []
    messages: list[Message] = []
    by_product: dict[str, Path] = {}
    for path in files:
        loader = _SpecLoader(path)
        if loader.product in by_product:
            raise SpecError(
                str(path),
                "$.info.x-btse-product",
                f"product {loader.product!r} is already defined by {by_product[loader.product]}",
            )
        by_product[loader.product] = path
        for server in loader.servers:
            clash = next((s for s in servers if s.name == server.name), None)
            if clash is not None:
                raise SpecError(
                    str(path),
                    f"$.servers.{server.name}",
                    f"server name also used by {clash.product}",
                )
        servers.extend(loader.servers)
        channels.extend(loader.channels)
        controls.extend(loader.controls)
        messages.extend(loader.messages.values())
    for product, kinds in REQUIRED_KINDS.items():
        if product not in by_product:
            raise SpecError(str(directory), "$", f"no spec file declares product {product!r}")
        have = {c.kind for c in channels if c.product == product and not c.deprecated}
        missing = [k for k in kinds if k not in have]
        if missing:
            raise SpecError(
                str(by_product[product]),
                "$.channels",
                f"missing channel kind(s) {missing} (x-btse-kind) that the collector needs",
            )
    return SpecRegistry(servers, channels, controls, messages, by_product)


class _SpecLoader:
    """Reads one AsyncAPI file into servers, channels, controls and messages, or SpecError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        try:
            with path.open(encoding="utf-8") as fh:
                doc = yaml.load(fh, Loader=_YAML_LOADER)
        except OSError as exc:
            raise SpecError(self.file, "$", f"cannot read: {exc}") from None
        except yaml.YAMLError as exc:
            raise SpecError(self.file, "$", f"not valid YAML: {exc}") from None
        self.doc = self._obj(doc, "$")
        if self.doc.get("asyncapi") != ASYNCAPI_VERSION:
            self._fail(
                "$.asyncapi", f"must be {ASYNCAPI_VERSION!r}, got {self.doc.get('asyncapi')!r}"
            )
        info = self._obj(self.doc.get("info"), "$.info")
        self.product = self._str(info.get("x-btse-product"), "$.info.x-btse-product")
        self.servers = self._load_servers()
        self.messages = self._load_messages()
        self.channels: list[Channel] = []
        self.controls: list[Control] = []
        self._load_channels()

    # ---- small checked accessors

    def _fail(self, where: str, message: str) -> NoReturn:
        raise SpecError(self.file, where, message)

    def _obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self._fail(where, f"must be a mapping, got {type(value).__name__}")
        return value

    def _str(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            self._fail(where, f"must be a non-empty string, got {value!r}")
        return value

    def _bool(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self._fail(where, f"must be true or false, got {value!r}")
        return value

    def _choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            self._fail(where, f"must be one of {list(choices)}, got {value!r}")
        return value

    def _deref(self, value: Any, where: str, depth: int = 0) -> Any:
        """Follow local ``$ref`` pointers recursively; returns a deep copy with refs inlined."""
        if depth > 50:
            self._fail(where, "$ref nesting too deep (a cycle?)")
        if isinstance(value, dict):
            if "$ref" in value:
                ref = value["$ref"]
                target = self._pointer(ref, where)
                return self._deref(target, f"{where}.$ref({ref})", depth + 1)
            return {k: self._deref(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self._deref(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return copy.copy(value)

    def _pointer(self, ref: Any, where: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            self._fail(where, f"only local $ref pointers ('#/...') are supported, got {ref!r}")
        node: Any = self.doc
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                self._fail(where, f"$ref {ref!r} points to nothing")
            node = node[part]
        return node

    # ---- sections

    def _load_servers(self) -> list[Server]:
        out: list[Server] = []
        servers = self._obj(self.doc.get("servers"), "$.servers")
        if not servers:
            self._fail("$.servers", "no servers")
        for name, raw in servers.items():
            where = f"$.servers.{name}"
            spec = self._obj(raw, where)
            url = self._str(spec.get("url"), f"{where}.url")
            parts = urlsplit(url)
            if parts.scheme not in ("ws", "wss") or not parts.netloc or not parts.path:
                self._fail(
                    f"{where}.url", f"must be a ws:// or wss:// URL with a path, got {url!r}"
                )
            kind = self._choice(spec.get("x-btse-kind"), f"{where}.x-btse-kind", SERVER_KINDS)
            env = self._choice(
                spec.get("x-btse-environment"), f"{where}.x-btse-environment", ENVIRONMENTS
            )
            auth_path = spec.get("x-btse-auth-path")
            if auth_path is not None:
                auth_path = self._str(auth_path, f"{where}.x-btse-auth-path")
            out.append(
                Server(
                    name=str(name),
                    product=self.product,
                    kind=kind,  # type: ignore[arg-type]
                    environment=env,  # type: ignore[arg-type]
                    url=url,
                    path=parts.path,
                    auth_path=auth_path,
                    description=str(spec.get("description", "")).strip(),
                )
            )
        return out

    def _load_messages(self) -> dict[str, Message]:
        components = self._obj(self.doc.get("components", {}), "$.components")
        raw_messages = self._obj(components.get("messages", {}), "$.components.messages")
        return {
            str(name): self._message(str(name), raw, f"$.components.messages.{name}")
            for name, raw in raw_messages.items()
        }

    def _message(self, name: str, raw: Any, where: str) -> Message:
        spec = self._obj(self._deref(raw, where), where)
        if "payload" not in spec:
            self._fail(f"{where}.payload", "every message needs a payload schema")
        payload = spec["payload"]
        if not isinstance(payload, dict):
            self._fail(f"{where}.payload", "must be a JSON Schema object")
        examples_raw = spec.get("examples", [])
        if not isinstance(examples_raw, list) or not examples_raw:
            self._fail(f"{where}.examples", "every message needs at least one example")
        content_type = str(spec.get("contentType", self.doc.get("defaultContentType", "")))
        examples: list[Example] = []
        for i, ex in enumerate(examples_raw):
            ex = self._obj(ex, f"{where}.examples[{i}]")
            if "payload" not in ex:
                self._fail(f"{where}.examples[{i}].payload", "an example needs a payload")
            body = ex["payload"]
            is_json = not (content_type == "text/plain" and isinstance(body, str))
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False) if is_json else body
            name_i = str(ex.get("name", f"example {i}"))
            examples.append(Example(name_i, str(ex.get("summary", "")), text, is_json))
        return Message(
            product=self.product,
            name=name,
            title=str(spec.get("title", name)),
            content_type=content_type,
            payload_schema=_freeze(payload),
            examples=tuple(examples),
            source=(self.file, where),
        )

    def _op_messages(self, op: Any, where: str) -> tuple[Message, ...]:
        op = self._obj(op, where)
        msg = self._obj(op.get("message"), f"{where}.message")
        refs = msg.get("oneOf", [msg])
        if not isinstance(refs, list) or not refs:
            self._fail(f"{where}.message.oneOf", "must be a non-empty list")
        out: list[Message] = []
        for i, ref in enumerate(refs):
            at = f"{where}.message.oneOf[{i}]" if "oneOf" in msg else f"{where}.message"
            ref = self._obj(ref, at)
            target = ref.get("$ref")
            prefix = "#/components/messages/"
            if not isinstance(target, str) or not target.startswith(prefix):
                self._fail(at, f"must be a $ref to {prefix}<name>")
            name = target[len(prefix) :]
            if name not in self.messages:
                self._fail(at, f"$ref {target!r} points to nothing")
            out.append(self.messages[name])
        return tuple(out)

    def _load_channels(self) -> None:
        channels = self._obj(self.doc.get("channels"), "$.channels")
        server_names = {s.name for s in self.servers}
        for key, raw in channels.items():
            where = f"$.channels['{key}']"
            spec = self._obj(raw, where)
            servers = spec.get("servers")
            if not isinstance(servers, list) or not servers:
                self._fail(f"{where}.servers", "must list the servers that serve this channel")
            for i, name in enumerate(servers):
                if name not in server_names:
                    self._fail(f"{where}.servers[{i}]", f"unknown server {name!r}")
            if "x-btse-control" in spec:
                self._control(str(key), spec, where, tuple(servers))
            else:
                self.channels.append(self._channel(str(key), spec, where, tuple(servers)))
        for name in REQUIRED_CONTROLS:
            if not any(c.name == name for c in self.controls):
                self._fail("$.channels", f"missing the {name!r} control channel (x-btse-control)")

    def _control(
        self, key: str, spec: dict[str, Any], where: str, servers: tuple[str, ...]
    ) -> None:
        name = self._choice(spec["x-btse-control"], f"{where}.x-btse-control", CONTROL_NAMES)
        if any(c.name == name for c in self.controls):
            self._fail(f"{where}.x-btse-control", f"control channel {name!r} is declared twice")
        sends = self._op_messages(spec["publish"], f"{where}.publish") if "publish" in spec else ()
        receives = (
            self._op_messages(spec["subscribe"], f"{where}.subscribe")
            if "subscribe" in spec
            else ()
        )
        self.controls.append(
            Control(
                self.product,
                name,
                servers,
                sends,
                receives,
                str(spec.get("description", "")).strip(),
            )
        )

    def _channel(
        self, key: str, spec: dict[str, Any], where: str, servers: tuple[str, ...]
    ) -> Channel:
        kind = self._str(spec.get("x-btse-kind"), f"{where}.x-btse-kind")
        auth = self._bool(spec.get("x-btse-auth-required"), f"{where}.x-btse-auth-required")
        deprecated = self._bool(spec.get("deprecated", False), f"{where}.deprecated")
        deprecation = spec.get("x-btse-deprecated")
        if deprecated != (deprecation is not None):
            self._fail(
                f"{where}.x-btse-deprecated",
                "a deprecated channel needs both `deprecated: true` and `x-btse-deprecated: <why>`",
            )
        if deprecation is not None:
            deprecation = self._str(deprecation, f"{where}.x-btse-deprecated")
        if not deprecated:
            clash = next((c for c in self.channels if c.kind == kind and not c.deprecated), None)
            if clash is not None:
                self._fail(
                    f"{where}.x-btse-kind",
                    f"kind {kind!r} is already the current channel {clash.template!r}",
                )
        params = self._parameters(key, spec, where)
        if "subscribe" not in spec:
            self._fail(
                f"{where}.subscribe", "a topic channel needs a subscribe operation (its frames)"
            )
        data = self._op_messages(spec["subscribe"], f"{where}.subscribe")
        if len(data) != 1:
            self._fail(f"{where}.subscribe.message", "a topic channel has exactly one data message")
        kinds = sorted({s.kind for s in self.servers if s.name in servers})
        variants = self._variants(spec, where, params)
        notes = spec.get("x-btse-notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            self._fail(f"{where}.x-btse-notes", "must be a list of strings")
        return Channel(
            product=self.product,
            kind=kind,
            template=key,
            parameters=params,
            servers=servers,
            server_kinds=tuple(kinds),
            auth_required=auth,
            deprecated=deprecated,
            message=data[0],
            variants=variants,
            deprecation=deprecation,
            description=str(spec.get("description", "")).strip(),
            notes=tuple(notes),
        )

    def _parameters(self, key: str, spec: dict[str, Any], where: str) -> tuple[Parameter, ...]:
        names = _PARAM_RE.findall(key)
        if len(set(names)) != len(names):
            self._fail(where, "a parameter appears twice in the topic template")
        raw = self._obj(spec.get("parameters", {}), f"{where}.parameters")
        declared = set(raw)
        if declared != set(names):
            self._fail(
                f"{where}.parameters",
                f"must declare exactly the template parameters {names}, declares {sorted(declared)}",
            )
        return tuple(self._parameter(n, raw[n], f"{where}.parameters.{n}") for n in names)

    def _parameter(self, name: str, raw: Any, where: str) -> Parameter:
        spec = self._obj(self._deref(raw, where), where)
        schema = self._obj(spec.get("schema"), f"{where}.schema")
        if schema.get("type") != "string":
            self._fail(f"{where}.schema.type", "a topic parameter is a string")
        pattern = self._str(schema.get("pattern"), f"{where}.schema.pattern")
        if not (pattern.startswith("^") and pattern.endswith("$")):
            self._fail(f"{where}.schema.pattern", "must be anchored with ^ and $")
        if re.search(r"\(\?[=!<]", pattern) or re.search(r"\\[1-9]", pattern):
            self._fail(
                f"{where}.schema.pattern",
                "no look-arounds or back-references (put exclusions in `not:`)",
            )
        try:
            re.compile(pattern)
            fastjsonschema.compile(schema, use_default=False, use_formats=False)
        except (re.error, fastjsonschema.JsonSchemaDefinitionException) as exc:
            self._fail(f"{where}.schema", f"invalid: {exc}")
        return Parameter(name, pattern, str(spec.get("description", "")).strip(), _freeze(schema))

    def _variants(
        self, spec: dict[str, Any], where: str, params: tuple[Parameter, ...]
    ) -> tuple[TopicVariant, ...]:
        raw = spec.get("x-btse-topic-variants", [])
        if not isinstance(raw, list):
            self._fail(f"{where}.x-btse-topic-variants", "must be a list")
        own = {p.name: p for p in params}
        components = self._obj(self.doc.get("components", {}), "$.components")
        shared = self._obj(components.get("parameters", {}), "$.components.parameters")
        out: list[TopicVariant] = []
        for i, item in enumerate(raw):
            at = f"{where}.x-btse-topic-variants[{i}]"
            item = self._obj(item, at)
            template = self._str(item.get("template"), f"{at}.template")
            vparams: list[Parameter] = []
            for n in _PARAM_RE.findall(template):
                if n in own:
                    vparams.append(own[n])
                elif n in shared:  # an extra such as the grouping of a grouped snapshotL1
                    vparams.append(self._parameter(n, shared[n], f"$.components.parameters.{n}"))
                else:
                    self._fail(f"{at}.template", f"parameter {n!r} is declared nowhere")
            defaults_raw = self._obj(item.get("defaults", {}), f"{at}.defaults")
            for n, v in defaults_raw.items():
                if n not in own or any(p.name == n for p in vparams):
                    self._fail(
                        f"{at}.defaults.{n}", "defaults fill channel parameters the variant omits"
                    )
                if not isinstance(v, str) or not re.fullmatch(own[n].pattern, v):
                    self._fail(f"{at}.defaults.{n}", f"must be a string matching {own[n].pattern}")
            out.append(
                TopicVariant(
                    template,
                    tuple(sorted(defaults_raw.items())),
                    str(item.get("description", "")).strip(),
                    tuple(vparams),
                )
            )
        return tuple(out)
