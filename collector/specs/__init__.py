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

from collector.specs.loader import default_specs_dir, load_registry
from collector.specs.model import (
    ENV_SPECS_DIR,
    REQUIRED_KINDS,
    Channel,
    Control,
    Example,
    Message,
    Parameter,
    Server,
    TopicMatch,
    TopicVariant,
)
from collector.specs.registry import SpecRegistry, Validator

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
    "Validator",
    "default_specs_dir",
    "load_registry",
]
