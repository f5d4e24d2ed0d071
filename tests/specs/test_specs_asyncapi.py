"""specs/*.asyncapi.yaml against the official AsyncAPI 2.6.0 JSON Schema, and their examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from spec_helpers import copy_specs

from collector.specs import SpecRegistry, default_specs_dir, load_registry

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / ".cache" / "asyncapi" / "2.6.0.json"
SPEC_FILES = sorted(default_specs_dir().glob("*.asyncapi.yaml"))


def _no_network(uri: str) -> Resource[Any]:
    raise LookupError(f"refusing to fetch {uri!r}: every $ref must resolve inside the bundle")


@pytest.fixture(scope="session")
def asyncapi_validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_FILE.is_file():
        pytest.fail(
            f"{SCHEMA_FILE} is missing: run `scripts/fetch-asyncapi-schema.sh` "
            "(part of the setup that `make test` runs; or `rm .venv/.installed && make test`)",
            pytrace=False,
        )
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema"
    # the bundle carries every definition (and the draft-07 meta-schema) under its $id
    registry: Registry[Any] = (
        Registry(retrieve=_no_network)
        .with_resource(  # type: ignore[call-arg]
            schema["$id"], DRAFT7.create_resource(schema)
        )
        .crawl()
    )
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, registry=registry)


def _errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_there_are_three_spec_files() -> None:
    assert [p.name for p in SPEC_FILES] == [
        "futures-websocket.asyncapi.yaml",
        "otc-websocket.asyncapi.yaml",
        "spot-websocket.asyncapi.yaml",
    ]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_validates_against_asyncapi_2_6_0(
    asyncapi_validator: jsonschema.Draft7Validator, path: Path
) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "2.6.0"
    assert _errors(asyncapi_validator, doc) == []


@pytest.fixture(scope="module")
def reg() -> SpecRegistry:
    return load_registry()


def test_every_example_validates_against_its_payload(reg: SpecRegistry) -> None:
    checked = 0
    for message in reg.messages():
        assert message.examples, f"{message} has no example"
        for example in message.examples:
            reg.validate(message, example.payload)
            checked += 1
    assert checked >= 40


def test_examples_keep_the_real_wire_frames(reg: SpecRegistry) -> None:
    texts = {ex.text for m in reg.messages() for ex in m.examples}
    for frame in (
        '{"topic":"update:SNDK-PERP_0","data":{"bids":[["1876.90","44"],["1876.89","122"],["1876.87","35"]],"asks":[["1880.19","900"],["1880.00","450"],["1879.70","450"]],"seqNum":8896865,"prevSeqNum":8896864,"type":"snapshot","symbol":"SNDK-PERP","timestamp":1790134937297}}',
        '{"topic":"snapshotL1:ETHPFC","data":{"bids":[["4386.37","8403"]],"asks":[["4386.58","8860"]],"type":"snapshotL1","symbol":"ETHPFC","timestamp":1759373840687}}',
        '{"topic":"tradeHistoryApi","data":[{"price":117661.3,"size":13,"side":"BUY","symbol":"BTCPFC","tradeId":929934907,"timestamp":1759326050158}]}',
        '{"topic":"tradeHistoryApiV3:BTC-PERP","data":[{"price":86641.9,"size":70,"side":"SELL","symbol":"BTC-PERP","tradeId":57971633,"timestamp":1790134428345}]}',
        "pong",
    ):
        assert frame in texts


def test_every_example_topic_matches_its_channel(reg: SpecRegistry) -> None:
    checked = 0
    for channel in reg.channels():
        for example in channel.message.examples:
            topic = example.payload["topic"]
            found = reg.match(channel.product, topic)
            assert found is not None, f"{channel}: example topic {topic!r} matches no channel"
            # a message shared by several deprecated channels matches one of them
            assert found[0].message == channel.message, f"{topic!r} matched {found[0]}"
            checked += 1
    assert checked >= 30


def _example_payload_mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def drop_seq(doc: dict[str, Any]) -> None:
        del doc["components"]["messages"]["orderbookUpdate"]["examples"][0]["payload"]["data"][
            "seqNum"
        ]

    def bad_side(doc: dict[str, Any]) -> None:
        doc["components"]["messages"]["publicTradesV3"]["examples"][0]["payload"]["data"][0][
            "side"
        ] = "sell"

    return [("example without seqNum", drop_seq), ("example with a lower-case side", bad_side)]


@pytest.mark.parametrize(
    ("label", "mutate"), _example_payload_mutations(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_broken_example_fails_validation(
    tmp_path: Path, label: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    specs = copy_specs(tmp_path, "futures-websocket.asyncapi.yaml", mutate)
    broken = load_registry(specs)  # loads: examples are data...
    failures = []
    for message in broken.messages("futures"):
        for example in message.examples:
            try:
                broken.validate(message, example.payload)
            except Exception as exc:
                failures.append((message.name, type(exc).__name__))
    # ...but the example test catches exactly the broken one
    assert len(failures) == 1, label
    assert failures[0][1] == "SpecValidationError"


def test_a_document_without_info_fails_asyncapi_validation(
    asyncapi_validator: jsonschema.Draft7Validator,
) -> None:
    doc = yaml.safe_load(SPEC_FILES[0].read_text(encoding="utf-8"))
    del doc["info"]["title"]
    assert any("'title' is a required property" in e for e in _errors(asyncapi_validator, doc))
    del doc["info"]
    assert any("'info' is a required property" in e for e in _errors(asyncapi_validator, doc))


def test_an_unknown_channel_field_fails_asyncapi_validation(
    asyncapi_validator: jsonschema.Draft7Validator,
) -> None:
    doc = yaml.safe_load(SPEC_FILES[0].read_text(encoding="utf-8"))
    doc["channels"]["update:{symbol}_{grouping}"]["btseKind"] = "book"  # not an x- extension
    assert _errors(asyncapi_validator, doc) != []
