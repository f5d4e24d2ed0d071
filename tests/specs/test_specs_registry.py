"""The spec registry: servers, channels, render/match round trips, validation, errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from collector.errors import SpecLookupError, SpecValidationError, TopicError
from collector.specs import Channel, SpecRegistry, load_registry


@pytest.fixture(scope="module")
def reg() -> SpecRegistry:
    return load_registry()


def test_products_and_servers(reg: SpecRegistry) -> None:
    assert reg.products == ("futures", "otc", "spot")
    names = {s.name for s in reg.servers()}
    for product in reg.products:
        for suffix in ("", "_oss"):
            assert f"{product}{suffix}" in names
            assert f"{product}{suffix}_testnet" in names
    oss = reg.server("spot_oss")
    assert (oss.product, oss.kind, oss.environment) == ("spot", "oss", "production")
    assert oss.url == "wss://ws.btse.com/ws/oss/spot"
    assert oss.path == "/ws/oss/spot"
    assert oss.auth_path is None
    main = reg.server("futures_testnet")
    assert (main.url, main.auth_path) == ("wss://testws.btse.io/ws/futures", "/ws/futures")
    assert {s.name for s in reg.servers("otc", "testnet")} == {"otc_testnet", "otc_oss_testnet"}


@pytest.mark.parametrize(
    ("product", "kind", "environment", "server"),
    [
        ("spot", "book", "production", "spot_oss"),
        ("spot", "l1", "production", "spot_oss"),
        ("spot", "trades", "production", "spot"),
        ("futures", "book", "production", "futures_oss"),
        ("futures", "trades", "production", "futures"),
        ("futures", "book", "testnet", "futures_oss_testnet"),
        ("spot", "trades", "testnet", "spot_testnet"),
    ],
)
def test_server_for(
    reg: SpecRegistry, product: str, kind: str, environment: str, server: str
) -> None:
    assert reg.server_for(product, kind, environment).name == server


def test_market_data_channels(reg: SpecRegistry) -> None:
    expected = {
        ("spot", "book"): ("update:{symbol}_{grouping}", ("oss",)),
        ("spot", "l1"): ("snapshotL1:{symbol}", ("oss",)),
        ("spot", "trades"): ("tradeHistoryApi:{symbol}", ("main",)),
        ("futures", "book"): ("update:{symbol}_{grouping}", ("oss",)),
        ("futures", "l1"): ("snapshotL1:{symbol}", ("oss",)),
        ("futures", "trades"): ("tradeHistoryApiV3:{symbol}", ("main",)),
    }
    for (product, kind), (template, server_kinds) in expected.items():
        ch = reg.channel(product, kind)
        assert (ch.template, ch.server_kinds) == (template, server_kinds)
        assert not ch.auth_required
        assert not ch.deprecated


@pytest.mark.parametrize(
    ("product", "kind", "params", "topic"),
    [
        ("spot", "book", {"symbol": "BTC-USD", "grouping": 0}, "update:BTC-USD_0"),
        ("spot", "book", {"symbol": "K_PEIPEI-USDT", "grouping": "3"}, "update:K_PEIPEI-USDT_3"),
        ("futures", "book", {"symbol": "BTC-PERP", "grouping": 8}, "update:BTC-PERP_8"),
        ("spot", "l1", {"symbol": "BTC-USD"}, "snapshotL1:BTC-USD"),
        ("spot", "trades", {"symbol": "ETH-USDT"}, "tradeHistoryApi:ETH-USDT"),
        ("futures", "trades", {"symbol": "BTC-260925"}, "tradeHistoryApiV3:BTC-260925"),
    ],
)
def test_render_and_match_round_trip(
    reg: SpecRegistry, product: str, kind: str, params: dict[str, Any], topic: str
) -> None:
    ch = reg.channel(product, kind)
    assert reg.render(ch, **params) == topic
    assert reg.match(product, topic) == (ch, {k: str(v) for k, v in params.items()})


def test_match_wire_quirks(reg: SpecRegistry) -> None:
    # pre-2023 ungrouped book topic: the same chain as _0
    found = reg.match_topic("spot", "update:BTC-USD")
    assert found is not None
    assert found.channel == reg.channel("spot", "book")
    assert dict(found.params) == {"symbol": "BTC-USD", "grouping": "0"}
    assert found.variant == "update:{symbol}"
    # grouped L1 (futures doc page form): the grouping is an extra, not an L1 parameter
    found = reg.match_topic("futures", "snapshotL1:BTC-PERP_0")
    assert found is not None
    assert found.channel == reg.channel("futures", "l1")
    assert (dict(found.params), dict(found.extra)) == ({"symbol": "BTC-PERP"}, {"grouping": "0"})
    # bare trade topic: no symbol in the topic, route by data[].symbol
    assert reg.match("spot", "tradeHistoryApi") == (reg.channel("spot", "trades"), {})
    legacy = reg.match("futures", "tradeHistoryApi")
    assert legacy is not None
    assert legacy[0].kind == "trades" and legacy[0].deprecated
    assert legacy[0].template == "tradeHistoryApi:{symbol}"
    assert reg.match("futures", "tradeHistoryApi:BTCPFC") == (legacy[0], {"symbol": "BTCPFC"})
    # legacy futures symbols on OSS
    assert reg.match("futures", "snapshotL1:ETHPFC") == (
        reg.channel("futures", "l1"),
        {"symbol": "ETHPFC"},
    )


@pytest.mark.parametrize(
    "topic",
    [
        "update:BTC-PERP_9",  # grouping out of range: acked and silent on the wire, not ours
        "update:../x_0",
        "update:a/b_0",
        "update:BTC USD_0",
        "update:BTC..USD_0",
        "update:",
        "foo:BTC-PERP",
        "tradeHistory:BTC-USD",  # a sample typo, never valid
        "tradeHistoryApiV3:BTC-PERP",  # futures topic asked of spot
        "",
    ],
)
def test_match_rejects(reg: SpecRegistry, topic: str) -> None:
    assert reg.match("spot", topic) is None


def test_match_is_cached_and_stable(reg: SpecRegistry) -> None:
    first = reg.match_topic("futures", "update:BTC-PERP_0")
    assert reg.match_topic("futures", "update:BTC-PERP_0") is first


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"symbol": "../x", "grouping": 0}, "symbol='../x'"),
        ({"symbol": "BTC/USD", "grouping": 0}, "symbol='BTC/USD'"),
        ({"symbol": "BTC USD", "grouping": 0}, "symbol='BTC USD'"),
        ({"symbol": "BTC-USD", "grouping": 9}, "grouping='9'"),
        ({"symbol": "BTC-USD_1", "grouping": 0}, "symbol='BTC-USD_1'"),
        ({"symbol": "BTC-USD"}, "missing ['grouping']"),
        ({"symbol": "BTC-USD", "grouping": 0, "depth": 1}, "unknown ['depth']"),
        ({"symbol": "BTC-USD", "grouping": True}, "grouping must be a string or an integer"),
    ],
)
def test_render_rejects_bad_params(reg: SpecRegistry, params: dict[str, Any], problem: str) -> None:
    with pytest.raises(TopicError) as exc:
        reg.render(reg.channel("spot", "book"), **params)
    assert problem in str(exc.value)
    assert exc.value.template == "update:{symbol}_{grouping}"


def test_lookup_errors_list_valid_names(reg: SpecRegistry) -> None:
    with pytest.raises(SpecLookupError) as exc:
        reg.channel("spot", "positions")
    assert exc.value.valid == reg.kinds("spot")
    assert "book" in str(exc.value)
    with pytest.raises(SpecLookupError, match="unknown product 'options'"):
        reg.channels("options")
    with pytest.raises(SpecLookupError, match="unknown server 'spot_osss'"):
        reg.server("spot_osss")
    with pytest.raises(SpecLookupError, match="unknown environment 'staging'"):
        reg.server_for("spot", "book", "staging")


SNAPSHOT: dict[str, Any] = {
    "topic": "update:SNDK-PERP_0",
    "data": {
        "bids": [["1876.90", "44"], ["1876.89", "122"]],
        "asks": [["1880.19", "900"]],
        "seqNum": 8896865,
        "prevSeqNum": 8896864,
        "type": "snapshot",
        "symbol": "SNDK-PERP",
        "timestamp": 1790134937297,
    },
}


def _mutated(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    import copy

    frame = copy.deepcopy(SNAPSHOT)
    node: Any = frame
    for part in path[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return frame


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("data", "type"), "partial", "$.data.type"),
        (("data", "seqNum"), "8896865", "$.data.seqNum"),
        (("data", "seqNum"), _DELETE, "$.data"),
        (("data", "bids", 0, 1), "44.5", "$.data.bids[0][1]"),  # futures sizes are whole contracts
        (("data", "bids", 1), ["1876.89"], "$.data.bids[1]"),
        (("data", "asks", 0, 0), 1880.19, "$.data.asks[0][0]"),
        (("data", "symbol"), "../x", "$.data.symbol"),
        (("topic",), _DELETE, "$"),
    ],
)
def test_validate_reports_the_json_path(
    reg: SpecRegistry, path: tuple[str | int, ...], value: Any, where: str
) -> None:
    book = reg.channel("futures", "book")
    reg.validate(book, SNAPSHOT)  # the unmutated frame is valid
    with pytest.raises(SpecValidationError) as exc:
        reg.validate(book, _mutated(path, value))
    assert exc.value.path == where
    assert exc.value.schema == "futures:orderbookUpdate"


def test_validate_trades_types(reg: SpecRegistry) -> None:
    trades = reg.channel("futures", "trades")
    frame = {
        "topic": "tradeHistoryApiV3:BTC-PERP",
        "data": [
            {
                "price": 86641.9,
                "size": 70,
                "side": "SELL",
                "symbol": "BTC-PERP",
                "tradeId": 57971633,
                "timestamp": 1790134428345,
            }
        ],
    }
    reg.validate(trades, frame)
    frame["data"][0]["side"] = "sell"  # type: ignore[index]
    with pytest.raises(SpecValidationError) as exc:
        reg.validate(trades, frame)
    assert exc.value.path == "$.data[0].side"
    frame["data"][0]["side"] = "BUY"  # type: ignore[index]
    frame["data"][0]["size"] = 0.5  # type: ignore[index]
    with pytest.raises(SpecValidationError, match=r"size"):
        reg.validate(trades, frame)
    spot = reg.channel("spot", "trades")
    reg.validate(spot, {**frame, "topic": "tradeHistoryApi:BTC-USD"})  # spot sizes are decimal


def test_validators_are_compiled_once(reg: SpecRegistry) -> None:
    ch = reg.channel("spot", "l1")
    assert reg.validator(ch) is reg.validator(ch)
    assert reg.validator(ch) is reg.validator(ch.message)


def test_control_messages(reg: SpecRegistry) -> None:
    sub = reg.control("spot", "subscription")
    assert [m.name for m in sub.sends] == ["subscribeRequest", "unsubscribeRequest"]
    assert {m.name for m in sub.receives} >= {"subscriptionAck", "errorFrame"}
    reg.validate(reg.message("futures", "subscriptionAck"), {"event": "subscribe", "channel": []})
    pong = reg.message("spot", "pong")
    assert pong.content_type == "text/plain"
    reg.validate(pong, "pong")
    with pytest.raises(SpecValidationError):
        reg.validate(pong, "PONG")
    err = reg.message("futures", "errorFrame")
    reg.validate(
        err, {"severity": "ERROR", "errors": [{"error": {"code": 1007, "message": "full"}}]}
    )
    with pytest.raises(SpecValidationError) as exc:
        reg.validate(
            err, {"severity": "ERROR", "errors": [{"error": {"code": "1007", "message": "x"}}]}
        )
    assert exc.value.path == "$.errors[0].error.code"


def test_channels_are_hashable_and_frozen(reg: SpecRegistry) -> None:
    ch = reg.channel("spot", "book")
    assert {ch: 1}[reg.match("spot", "update:ETH-USD_2")[0]] == 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        ch.kind = "l1"  # type: ignore[misc]
    assert isinstance(ch, Channel)
    with pytest.raises(TypeError):
        ch.payload_schema["type"] = "array"  # type: ignore[index]


def test_specs_module_is_pure() -> None:
    code = (
        "import sys, collector.specs as s; s.load_registry(); "
        "bad = [m for m in ('asyncio', 'websockets', 'aiohttp') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"


def test_private_and_otc_payloads(reg: SpecRegistry) -> None:
    quote = reg.channel("otc", "otc_quote")
    assert quote.auth_required and quote.template == "quote"
    assert reg.render(quote) == "quote"
    assert reg.server_for("otc", "otc_quote").auth_path == "/ws/otc"
    frame = dict(quote.message.examples[0].payload)
    frame["sellQuoteId"] = None  # documented nullable
    reg.validate(quote, frame)
    frame["buyUnitPrice"] = "47865.58"
    with pytest.raises(SpecValidationError) as exc:
        reg.validate(quote, frame)
    assert exc.value.path == "$.buyUnitPrice"

    positions = reg.channel("futures", "positions")
    record = dict(positions.message.examples[0].payload["data"][0])
    reg.validate(positions, {"topic": "positionsV3", "data": [record]})
    del record["markedPrice"]  # neither markPrice (docs) nor markedPrice (wire)
    with pytest.raises(SpecValidationError):
        reg.validate(positions, {"topic": "positionsV3", "data": [record]})
    reg.validate(reg.channel("futures", "all_positions"), {"topic": "allPositionV4", "data": []})


def test_auth_request_schema(reg: SpecRegistry) -> None:
    auth = reg.control("spot", "authentication")
    request = auth.sends[0]
    assert request.name == "authRequest"
    assert [m.name for m in auth.receives] == ["loginAck", "restStyleError"]
    good = request.examples[0].payload
    assert good["args"][2].startswith("c410d38c")  # the documented /ws/spot signature
    reg.validate(request, good)
    bad = {"op": "authKeyExpires", "args": [good["args"][0], good["args"][1], "C410D38C"]}
    with pytest.raises(SpecValidationError) as exc:
        reg.validate(request, bad)
    assert exc.value.path == "$.args[2]"
    futures = reg.message("futures", "authRequest").examples[0].payload
    assert futures["args"][2].startswith("bd8afb8b")  # not the spot value the futures docs embed
    assert reg.message("otc", "authRequest").examples[0].payload["args"][2].startswith("971798b3")
