"""The spec registry: lookups over the loaded specs, topic render/match and payload checks.

Built by :func:`collector.specs.loader.load_registry`. Topic templates compile to one regular
expression each (indexed by their literal prefix), matches are cached, and payload validators
are compiled with fastjsonschema on first use and cached, so that :meth:`SpecRegistry.validate`
is cheap enough for sampling on the hot path. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

import fastjsonschema

from collector.errors import SpecError, SpecLookupError, SpecValidationError, TopicError
from collector.specs.model import (
    ENVIRONMENTS,
    PARAM_RE,
    Channel,
    Control,
    Message,
    Parameter,
    Server,
    TopicMatch,
    TopicVariant,
)

Validator: TypeAlias = Callable[[Any], Any]
_MATCH_CACHE_LIMIT = 65536
_T = TypeVar("_T")


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
        return self._lookup(self._by_kind, product, kind, "channel")

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
        return _names_of(self._by_kind, product)

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
        return PARAM_RE.sub(lambda m: values[m.group(1)], channel.template)

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
        return self._lookup(self._controls, product, name, "control channel")

    def message(self, product: str, name: str) -> Message:
        """A message by its components.messages name, e.g. ``("spot", "subscriptionAck")``."""
        return self._lookup(self._messages, product, name, "message")

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

    def _lookup(
        self, table: Mapping[tuple[str, str], _T], product: str, name: str, what: str
    ) -> _T:
        """``table[(product, name)]``, or SpecLookupError listing the names ``product`` has."""
        self._check_product(product)
        try:
            return table[(product, name)]
        except KeyError:
            raise SpecLookupError(f"{product} {what}", name, _names_of(table, product)) from None

    def _check_product(self, product: str) -> None:
        if product not in self.files:
            raise SpecLookupError("product", product, self.products)


def _names_of(table: Mapping[tuple[str, str], object], product: str) -> tuple[str, ...]:
    return tuple(sorted(name for p, name in table if p == product))


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
    for m in PARAM_RE.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        body = params[m.group(1)].pattern[1:-1]
        parts.append(f"(?P<{m.group(1)}>{body})")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))
