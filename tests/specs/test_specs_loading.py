"""A broken or incomplete spec file fails loudly, naming the file and the JSON path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from spec_helpers import copy_specs

from collector import cli
from collector.errors import EXIT_CONFIG, EXIT_USAGE, SpecError
from collector.specs import ENV_SPECS_DIR, default_specs_dir, load_registry

SPECS = default_specs_dir()
SPOT = "spot-websocket.asyncapi.yaml"
FUTURES = "futures-websocket.asyncapi.yaml"
BOOK = "update:{symbol}_{grouping}"


def _del(*keys: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return mutate


def _set(value: Any, *keys: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], str, str]] = [
    ("remove the book channel", SPOT, _del("channels", BOOK), "$.channels", "['book']"),
    (
        "remove a private channel",
        FUTURES,
        _del("channels", "positionsV3"),
        "$.channels",
        "['positions']",
    ),
    (
        "remove x-btse-kind",
        SPOT,
        _del("channels", BOOK, "x-btse-kind"),
        f"$.channels['{BOOK}'].x-btse-kind",
        "non-empty string",
    ),
    (
        "undeclared template parameter",
        SPOT,
        _del("channels", BOOK, "parameters", "grouping"),
        f"$.channels['{BOOK}'].parameters",
        "template parameters",
    ),
    (
        "unknown server",
        FUTURES,
        _set(["futures_osss"], "channels", BOOK, "servers"),
        f"$.channels['{BOOK}'].servers[0]",
        "unknown server 'futures_osss'",
    ),
    (
        "dangling $ref",
        SPOT,
        _set({"$ref": "#/components/messages/nope"}, "channels", BOOK, "subscribe", "message"),
        f"$.channels['{BOOK}'].subscribe.message",
        "points to nothing",
    ),
    (
        "message without payload",
        SPOT,
        _del("components", "messages", "orderbookUpdate", "payload"),
        "$.components.messages.orderbookUpdate.payload",
        "payload schema",
    ),
    (
        "message without examples",
        FUTURES,
        _set([], "components", "messages", "l1Snapshot", "examples"),
        "$.components.messages.l1Snapshot.examples",
        "at least one example",
    ),
    (
        "deprecated without reason",
        FUTURES,
        _del("channels", "tradeHistoryApi:{symbol}", "x-btse-deprecated"),
        "$.channels['tradeHistoryApi:{symbol}'].x-btse-deprecated",
        "needs both",
    ),
    (
        "look-ahead in a parameter pattern",
        SPOT,
        _set("^(?!x)[A-Z]+$", "components", "parameters", "symbol", "schema", "pattern"),
        f"$.channels['{BOOK}'].parameters.symbol.schema.pattern",
        "look-arounds",
    ),
    (
        "unanchored parameter pattern",
        SPOT,
        _set("[0-8]", "components", "parameters", "grouping", "schema", "pattern"),
        f"$.channels['{BOOK}'].parameters.grouping.schema.pattern",
        "anchored",
    ),
    (
        "no auth control channel",
        FUTURES,
        _del("channels", "authentication"),
        "$.channels",
        "'authentication' control channel",
    ),
    (
        "bad server kind",
        SPOT,
        _set("edge", "servers", "spot", "x-btse-kind"),
        "$.servers.spot.x-btse-kind",
        "main",
    ),
    (
        "http server URL",
        SPOT,
        _set("https://ws.btse.com/ws/spot", "servers", "spot", "url"),
        "$.servers.spot.url",
        "wss://",
    ),
    ("wrong AsyncAPI version", SPOT, _set("3.0.0", "asyncapi"), "$.asyncapi", "2.6.0"),
    (
        "two current channels of one kind",
        SPOT,
        _set("book", "channels", "snapshotL1:{symbol}", "x-btse-kind"),
        "$.channels['snapshotL1:{symbol}'].x-btse-kind",
        "already the current channel",
    ),
]


@pytest.mark.parametrize(
    ("label", "name", "mutate", "path", "text"), CASES, ids=[c[0] for c in CASES]
)
def test_broken_spec_raises_spec_error(
    tmp_path: Path,
    label: str,
    name: str,
    mutate: Callable[[dict[str, Any]], None],
    path: str,
    text: str,
) -> None:
    specs = copy_specs(tmp_path, name, mutate)
    with pytest.raises(SpecError) as exc:
        load_registry(specs)
    assert exc.value.file == str(specs / name), label
    assert exc.value.path == path, label
    assert text in exc.value.message, label
    assert exc.value.exit_code == EXIT_CONFIG


def test_invalid_payload_schema_fails_on_compile(tmp_path: Path) -> None:
    specs = copy_specs(
        tmp_path, SPOT, _set({"type": "objet"}, "components", "messages", "pong", "payload")
    )
    reg = load_registry(specs)  # validators compile lazily...
    with pytest.raises(SpecError) as exc:
        reg.compile_all()  # ...and compile_all() finds the broken one
    assert exc.value.file == str(specs / SPOT)
    assert exc.value.path == "$.components.messages.pong.payload"
    assert "not a valid JSON Schema" in exc.value.message
    with pytest.raises(SpecError):
        reg.validate(reg.message("spot", "pong"), "pong")


def test_every_shipped_validator_compiles() -> None:
    assert load_registry().compile_all() >= 50


def test_unmutated_copy_loads(tmp_path: Path) -> None:
    reg = load_registry(copy_specs(tmp_path, "", lambda doc: None))
    assert reg.products == ("futures", "otc", "spot")


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    copy_specs(tmp_path, "", lambda doc: None)
    (tmp_path / SPOT).write_text("asyncapi: 2.6.0\ninfo: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_registry(tmp_path)
    assert exc.value.file == str(tmp_path / SPOT)
    assert "not valid YAML" in exc.value.message
    assert "line" in exc.value.message


def test_missing_product_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no \*\.asyncapi\.yaml files"):
        load_registry(tmp_path)
    copy_specs(tmp_path, "", lambda doc: None)
    (tmp_path / "otc-websocket.asyncapi.yaml").unlink()
    with pytest.raises(SpecError, match="no spec file declares product 'otc'"):
        load_registry(tmp_path)


def test_duplicate_product(tmp_path: Path) -> None:
    copy_specs(tmp_path, "", lambda doc: None)
    (tmp_path / "spot2.asyncapi.yaml").write_text((tmp_path / SPOT).read_text(), encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_registry(tmp_path)
    assert exc.value.path == "$.info.x-btse-product"
    assert "already defined" in exc.value.message


def test_env_var_chooses_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SPECS_DIR, str(tmp_path))
    assert default_specs_dir() == tmp_path
    with pytest.raises(SpecError) as exc:
        load_registry()
    assert exc.value.file == str(tmp_path)


# ---------------------------------------------------------------- btse-collector specs


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["specs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["product", "kind", "servers", "topic", "auth", "deprecated"]
    rows = [line.split() for line in out[2:]]
    assert rows[[r[:2] for r in rows].index(["spot", "book"])][:4] == [
        "spot",
        "book",
        "spot_oss",
        "update:{symbol}_{grouping}",
    ]
    otc = next(r for r in rows if r[0] == "otc")
    assert otc == ["otc", "otc_quote", "otc", "quote", "yes"]
    assert any(r[:2] == ["futures", "trades"] and r[-1] == "yes" for r in rows)  # legacy topic


def test_cli_json_product_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["specs", "--product", "futures", "--format", "json", "--environment", "testnet"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert {r["product"] for r in rows} == {"futures"}
    book = next(r for r in rows if r["kind"] == "book" and not r["deprecated"])
    assert book["servers"] == ["futures_oss_testnet"]
    assert book["urls"] == ["wss://testws.btse.io/ws/oss/futures"]
    assert book["variants"] == ["update:{symbol}"]
    private = {r["kind"] for r in rows if r["auth"] and not r["deprecated"]}
    assert private == {"notifications", "fills", "positions", "all_positions"}


def test_cli_unknown_product_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["specs", "--product", "options"]) == EXIT_USAGE
    assert "unknown product 'options'; valid: futures, otc, spot" in capsys.readouterr().err


def test_cli_broken_spec_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = copy_specs(tmp_path, SPOT, _del("channels", BOOK))
    assert cli.main(["specs", "--specs-dir", str(specs)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert SPOT in err and "$.channels" in err and "book" in err
