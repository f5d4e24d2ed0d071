"""Reading ``specs/*.asyncapi.yaml`` into the spec model, checking every convention.

:func:`load_registry` loads each file with :class:`_SpecLoader` and checks what spans files
(one file per product, unique server names, the channel kinds the collector needs). A broken
spec raises :class:`~collector.errors.SpecError` naming the file and the JSON path
(``$.channels['update:{symbol}_{grouping}'].parameters``) of the first problem.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import fastjsonschema
import yaml

from collector.errors import SpecError
from collector.paths import data_dir
from collector.specs.model import (
    CONTROL_NAMES,
    ENV_SPECS_DIR,
    ENVIRONMENTS,
    PARAM_RE,
    REQUIRED_CONTROLS,
    REQUIRED_KINDS,
    SERVER_KINDS,
    Channel,
    Control,
    Example,
    Message,
    Parameter,
    Server,
    TopicVariant,
)
from collector.specs.registry import SpecRegistry

SPEC_GLOB = "*.asyncapi.yaml"
ASYNCAPI_VERSION = "2.6.0"
# libyaml's safe loader when PyYAML was built with it (5x faster than the pure-Python one)
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_specs_dir() -> Path:
    """``$BTSE_COLLECTOR_SPECS`` if set, else ``specs/`` at the root of this repository (or the
    copy an installed wheel carries: :func:`collector.paths.data_dir`)."""
    return data_dir("specs", ENV_SPECS_DIR, "*.asyncapi.yaml")


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
        names = PARAM_RE.findall(key)
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
            for n in PARAM_RE.findall(template):
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


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value
