"""Config loading: every problem at once, with file, line, dotted key and suggestions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector import cli
from collector.config import (
    Config,
    CredentialsConfig,
    SpecCatalog,
    StreamSpec,
    data_dir_problem,
    load_config,
    resolve_credentials,
    suggest,
)
from collector.errors import EXIT_CONFIG, ConfigError, ConfigProblem, CredentialsError, SpecError

CATALOG = SpecCatalog(
    {"spot": ("book", "l1", "trades"), "futures": ("book", "l1", "trades")},
    ("futures", "futures_oss", "futures_testnet", "otc", "spot", "spot_oss", "spot_testnet"),
)
REPO = Path(__file__).resolve().parents[1]

MINIMAL = """\
data_dir: ./data
markets:
  - product: spot
    symbols: [BTC-USD]
    channels: [book]
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), catalog=CATALOG)
    return exc.value.problems


def by_key(found: list[ConfigProblem]) -> dict[str, ConfigProblem]:
    return {p.key: p for p in found}


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), catalog=CATALOG)
    assert cfg.data_dir == Path("data")
    assert cfg.environment == "production"
    assert cfg.markets[0].groupings == (0,)
    assert cfg.storage.flush_interval_s == 5.0
    assert cfg.storage.rotate_max_bytes == 256 * 1024 * 1024
    assert cfg.connection.max_topics_per_connection == 100
    assert cfg.pipeline.queue_max_frames == 100_000
    assert cfg.health.listen == ("127.0.0.1", 9108)
    assert cfg.health.threshold("spot", "trades", "BTC-USD") == 3600.0
    assert cfg.logging.format == "auto"
    assert cfg.otc is None and not cfg.needs_credentials
    assert cfg.streams() == (StreamSpec("spot", "book", "BTC-USD", 0),)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), catalog=CATALOG)
    with pytest.raises(AttributeError):
        cfg.environment = "testnet"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.endpoints["spot"] = "ws://x"  # type: ignore[index]


def test_shipped_default_config_is_valid() -> None:
    cfg = load_config(REPO / "deploy" / "collector.yaml", catalog=CATALOG)
    assert [(m.product, m.symbols) for m in cfg.markets] == [
        ("spot", ("BTC-USD", "ETH-USD")),
        ("futures", ("BTC-PERP", "ETH-PERP")),
    ]
    assert all(set(m.channels) == {"book", "trades", "l1"} for m in cfg.markets)
    assert len(cfg.streams()) == 12
    assert cfg.otc is None


def test_every_problem_is_reported_at_once_with_line_and_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        data_dir: ./data
        environment: prod
        endpoints:
          spot_os: ws://127.0.0.1:1/ws/oss/spot
        markets:
          - product: spot
            symbls: [BTC-USD]
            channels: [book, trade]
          - product: futures
            symbols: [../x, "", "a b", btc-perp, /etc]
            channels: [book]
            groupings: [0, 9]
        storage:
          flush_interval_s: -1
          raw: yes please
        """,
    )
    keys = by_key(found)
    assert keys["environment"].line == 2
    assert "production, testnet" in keys["environment"].message
    assert keys["endpoints.spot_os"].suggestion == "spot_oss"
    assert "futures_oss" in keys["endpoints.spot_os"].message  # lists the valid names
    assert keys["markets[0].symbls"].line == 7
    assert keys["markets[0].symbls"].suggestion == "symbols"
    assert "markets[0]" not in keys  # the typo is the explanation, no extra "missing symbols"
    assert keys["markets[0].channels[1]"].suggestion == "trades"
    for i in (0, 1, 2, 4):
        assert keys[f"markets[1].symbols[{i}]"].line == 10
        assert "invalid symbol" in keys[f"markets[1].symbols[{i}]"].message
    assert keys["markets[1].symbols[3]"].suggestion == "BTC-PERP"
    assert keys["markets[1].groupings[1]"].line == 12
    assert "out of range [0, 8]" in keys["markets[1].groupings[1]"].message
    assert keys["storage.flush_interval_s"].line == 14
    assert keys["storage.raw"].line == 15
    assert len(found) == 12
    assert str(keys["markets[0].symbls"]).endswith(
        "c.yaml:7: markets[0].symbls: unknown key (valid keys: product, symbols, channels, "
        "groupings) (did you mean 'symbols'?)"
    )


def test_problems_are_sorted_by_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "data_dir: 1\nlogging: {level: loud}\nbook: {snapshot_depth: 0}\n")
    assert [(p.line, p.key) for p in found] == [
        (1, "data_dir"),
        (1, "markets"),
        (2, "logging.level"),
        (3, "book.snapshot_depth"),
    ]


@pytest.mark.parametrize(
    ("yaml_text", "key", "needle"),
    [
        (
            "data_dir: d\nmarkets: [{product: otc, symbols: [X], channels: [book]}]\n",
            "markets[0].product",
            "top-level 'otc'",
        ),
        (
            "data_dir: d\nmarkets: [{product: spott, symbols: [X], channels: [book]}]\n",
            "markets[0].product",
            "futures, spot",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [], channels: [book]}]\n",
            "markets[0].symbols",
            "at least one",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1], groupings: [1]}]\n",
            "markets[0].groupings",
            "only apply",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B, A-B], channels: [l1]}]\n",
            "markets[0].symbols[1]",
            "listed twice",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nendpoints: {spot: http://x}\n",
            "endpoints.spot",
            "ws://",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nconnection: {max_topics_per_connection: 101}\n",
            "connection.max_topics_per_connection",
            "out of range",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nconnection: {backoff_initial_s: 10, backoff_max_s: 5}\n",
            "connection.backoff_max_s",
            ">= connection.backoff_initial_s",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\npipeline: {queue_max_frames: 1.5}\n",
            "pipeline.queue_max_frames",
            "integer",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nstorage: {raw: 1}\n",
            "storage.raw",
            "true or false",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nhealth: {listen: 'localhost'}\n",
            "health.listen",
            "HOST:PORT",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nhealth: {max_silence_s: {bok: 5}}\n",
            "health.max_silence_s.bok",
            "unknown key",
        ),
        (
            "data_dir: d\nmarkets: [{product: spot, symbols: [A-B], channels: [l1]}]\nlogging: {format: xml}\n",
            "logging.format",
            "auto, json, console",
        ),
        (
            "markets: [{product: spot, symbols: [A-B], channels: [l1]}]\n",
            "(top level)",
            "missing required key 'data_dir'",
        ),
        ("data_dir: d\n", "markets", "nothing to collect"),
    ],
)
def test_each_kind_of_problem(tmp_path: Path, yaml_text: str, key: str, needle: str) -> None:
    found = by_key(problems(tmp_path, yaml_text))
    assert key in found, list(found)
    assert needle in found[key].message


def test_invalid_yaml_syntax_has_a_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "data_dir: d\nmarkets:\n  - product: spot\n   symbols: [\n")
    assert len(found) == 1
    assert found[0].key == "(yaml)"
    assert found[0].line == 4
    assert "invalid YAML" in found[0].message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    found = by_key(problems(tmp_path, MINIMAL + "data_dir: other\n"))
    assert found["data_dir"].line == 6
    assert "twice" in found["data_dir"].message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "missing.yaml", catalog=CATALOG)
    assert "cannot read config" in exc.value.problems[0].message


@pytest.mark.parametrize(
    ("credentials", "keys", "message", "secrets"),
    [
        (
            "{api_key: abcdef123456, api_secret: hunter2hunter2}",
            ("api_key", "api_secret"),
            "looks like a credential",
            ("hunter2", "abcdef123456"),
        ),
        (
            "{api_key_env: 3f9a8b7c6d5e4f3a2b1c, api_secret_env: my_Secret_Value}",
            ("api_key_env", "api_secret_env"),
            "NAME of an environment variable",
            ("3f9a8b7c6d5e4f3a2b1c", "my_Secret_Value"),
        ),
    ],
    ids=["secret-in-yaml", "credential-as-env-name"],
)
def test_credentials_in_yaml_are_errors_and_never_echoed(
    tmp_path: Path, credentials: str, keys: tuple[str, ...], message: str, secrets: tuple[str, ...]
) -> None:
    found = problems(tmp_path, MINIMAL + f"otc:\n  credentials: {credentials}\n")
    by = by_key(found)
    for key in keys:
        assert message in by[f"otc.credentials.{key}"].message
    text = "\n".join(str(p) for p in found)
    assert not [s for s in secrets if s in text]


def test_otc_quotes_are_checked(tmp_path: Path) -> None:
    found = by_key(
        problems(
            tmp_path,
            """\
            data_dir: d
            otc:
              quotes:
                - {symbol: BTC-USD, quantity: 0, currency: btc, side: BUY}
                - {symbol: BTC-USD, quantity: 1, currency: BTC, cl_order_id: "a b"}
                - {symbol: BTC-USD}
            """,
        )
    )
    assert "out of range (0," in found["otc.quotes[0].quantity"].message
    assert found["otc.quotes[0].currency"].suggestion == "BTC"
    assert found["otc.quotes[0].side"].suggestion == "buy"
    assert "cl_order_id" in found["otc.quotes[1].cl_order_id"].key
    assert found["otc.quotes[2]"].message == "missing required keys 'quantity', 'currency'"


def test_otc_config_and_streams(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """\
            data_dir: d
            otc:
              quotes:
                - {symbol: BTC-USD, quantity: 1, currency: BTC}
                - {symbol: BTC-USD, quantity: 2.5, currency: BTC, side: sell, cl_order_id: q2}
              credentials: {api_key_env: MY_KEY, api_secret_env: MY_SECRET}
            """,
        ),
        catalog=CATALOG,
    )
    assert cfg.needs_credentials
    assert cfg.otc is not None
    assert cfg.otc.quotes[1].side == "sell" and cfg.otc.quotes[1].quantity == 2.5
    assert cfg.otc.credentials == CredentialsConfig("MY_KEY", "MY_SECRET", None)
    assert cfg.streams() == (
        StreamSpec("otc", "otc_quote", "BTC-USD"),
        StreamSpec("otc", "otc_quote", "BTC-USD"),
    )


def test_health_thresholds_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL
            + """\
health:
  listen: null
  max_silence_s: {book: 30}
  overrides:
    - {product: spot, symbol: BTC-USD, max_silence_s: 600}
    - {product: spot, symbol: BTC-USD, channel: book, max_silence_s: 90}
  watchdog: {min_fresh_fraction: 0.5}
""",
        ),
        catalog=CATALOG,
    )
    h = cfg.health
    assert h.listen is None
    assert h.threshold("spot", "book", "BTC-USD") == 90  # exact channel override wins
    assert h.threshold("spot", "l1", "BTC-USD") == 600  # symbol-wide override
    assert h.threshold("spot", "book", "ETH-USD") == 30  # per-kind default from the file
    assert h.threshold("spot", "trades", "ETH-USD") == 3600  # built-in default
    assert h.watchdog.min_fresh_fraction == 0.5


def test_override_of_an_unconfigured_stream_is_an_error(tmp_path: Path) -> None:
    found = by_key(
        problems(
            tmp_path,
            MINIMAL
            + "health:\n  overrides: [{product: spot, symbol: ETH-USD, max_silence_s: 5}]\n",
        )
    )
    assert "not a configured stream" in found["health.overrides[0]"].message


def test_duplicate_stream_across_market_entries(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        MINIMAL + "  - product: spot\n    symbols: [BTC-USD]\n    channels: [book, l1]\n",
    )
    assert any("already configured at markets[0]" in p.message for p in found)


def test_product_without_channel(tmp_path: Path) -> None:
    catalog = SpecCatalog(
        {"spot": ("book", "l1", "trades"), "futures": ("book", "trades")}, ("spot",)
    )
    with pytest.raises(ConfigError) as exc:
        load_config(
            write(
                tmp_path,
                "data_dir: d\nmarkets: [{product: futures, symbols: [X], channels: [l1]}]\n",
            ),
            catalog=catalog,
        )
    assert "futures' has no 'l1' channel (valid: book, trades)" in str(exc.value)


def test_broken_specs_are_a_config_problem(tmp_path: Path) -> None:
    def broken(_: Path | None) -> SpecCatalog:
        raise SpecError("specs/spot.yaml", "$.channels", "missing")

    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, MINIMAL + "specs_dir: ./nowhere\n"), load_catalog=broken)
    assert exc.value.problems[0].key == "specs_dir"
    assert "$.channels" in exc.value.problems[0].message


def test_real_registry_catalog(tmp_path: Path) -> None:
    pytest.importorskip("collector.specs")
    cfg = load_config(REPO / "deploy" / "collector.yaml")
    assert isinstance(cfg, Config)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, MINIMAL + "endpoints: {spotoss: ws://h/x}\n"))
    assert exc.value.problems[0].suggestion == "spot_oss"


def test_suggest() -> None:
    assert suggest("symbls", ["product", "symbols", "channels"]) == "symbols"
    assert suggest("zzz", ["product", "symbols"]) is None


# -- credentials


def test_credentials_from_environment() -> None:
    creds = resolve_credentials(
        CredentialsConfig(), {"BTSE_API_KEY": "key-1234567890", "BTSE_API_SECRET": "s3cret-value"}
    )
    assert (creds.api_key, creds.api_secret, creds.source) == (
        "key-1234567890",
        "s3cret-value",
        "environment",
    )
    assert "s3cret" not in repr(creds) and "s3cret" not in str(creds)
    assert "key-1234567890" not in repr(creds)


def test_credentials_from_file_and_systemd_directory(tmp_path: Path) -> None:
    f = tmp_path / "creds"
    f.write_text("# comment\nBTSE_API_KEY=abc\nexport BTSE_API_SECRET='xyz'\n")
    creds = resolve_credentials(CredentialsConfig(file=f), {})
    assert (creds.api_key, creds.api_secret) == ("abc", "xyz")
    (tmp_path / "btse").write_text("BTSE_API_KEY=k2\nBTSE_API_SECRET=s2\n")
    creds = resolve_credentials(CredentialsConfig(), {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (creds.api_key, creds.api_secret) == ("k2", "s2")
    assert creds.source == str(tmp_path / "btse")


def test_missing_credentials_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as exc:
        resolve_credentials(CredentialsConfig(), {"BTSE_API_KEY": "only-key"})
    assert "BTSE_API_KEY/BTSE_API_SECRET" in str(exc.value)
    assert "only-key" not in str(exc.value)
    f = tmp_path / "creds"
    f.write_text("BTSE_API_KEY=abc\nBTSE_API_SECRET=\n")
    with pytest.raises(CredentialsError, match="has no BTSE_API_SECRET"):
        resolve_credentials(CredentialsConfig(file=f), {})
    with pytest.raises(CredentialsError, match="cannot read credentials file"):
        resolve_credentials(CredentialsConfig(file=tmp_path / "nope"), {})
    f.write_text("garbage-line-with-secret\n")
    with pytest.raises(CredentialsError) as bad:
        resolve_credentials(CredentialsConfig(file=f), {})
    assert "garbage" not in str(bad.value)


def test_credentials_example_parses(tmp_path: Path) -> None:
    creds = resolve_credentials(CredentialsConfig(file=REPO / "deploy" / "credentials.example"), {})
    assert creds.api_key and creds.api_secret


def test_data_dir_problem(tmp_path: Path) -> None:
    assert data_dir_problem(tmp_path / "new" / "deeper") is None
    f = tmp_path / "file"
    f.write_text("x")
    assert "not a directory" in (data_dir_problem(f / "sub") or "")


def test_otc_quotes_need_an_otc_spec(tmp_path: Path) -> None:
    catalog = SpecCatalog({"spot": ("book",)}, ("spot",), has_otc=False)
    with pytest.raises(ConfigError) as exc:
        load_config(
            write(
                tmp_path,
                "data_dir: d\notc: {quotes: [{symbol: BTC-USD, quantity: 1, currency: BTC}]}\n",
            ),
            catalog=catalog,
        )
    assert [(p.key, p.message) for p in exc.value.problems] == [
        ("otc.quotes", "the specs in use describe no OTC product")
    ]


def test_credentials_section_as_a_string_is_not_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "otc:\n  credentials: abcdefsecret\n")
    assert [p.key for p in found] == ["otc.credentials"]
    assert "abcdefsecret" not in str(found[0])


def test_two_spellings_of_one_market_in_one_entry(tmp_path: Path) -> None:
    # reference §3.0: BTSE folds BTC-PERP-USDT into BTC-PERP (one book; unsubscribing either
    # spelling stops both)
    found = problems(
        tmp_path,
        "data_dir: d\nmarkets:\n  - product: futures\n"
        "    symbols: [BTC-PERP, ETH-PERP, BTC-PERP-USDT]\n    channels: [book, l1]\n",
    )
    assert [(p.line, p.key, p.suggestion) for p in found] == [
        (4, "markets[0].symbols[2]", "BTC-PERP")
    ]
    assert found[0].message == (
        "BTC-PERP-USDT is the futures market BTC-PERP, whose book and l1 are already configured "
        "as BTC-PERP at markets[0].symbols[0]: BTSE folds both spellings into one subscription "
        "(one book, and unsubscribing either stops both); configure each stream once, as BTC-PERP"
    )


def test_legacy_and_markets_api_spellings_across_entries(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "data_dir: d\nmarkets:\n"
        "  - product: futures\n    symbols: [BTCPFC]\n    channels: [book, l1]\n"
        "  - product: futures\n    symbols: [ETH-PERP, BTC-PERP]\n    channels: [trades]\n"
        "  - product: futures\n    symbols: [BTC-PERP-USDT, ETHPFC]\n    channels: [l1, trades]\n",
    )
    assert [(p.line, p.key, p.suggestion) for p in found] == [
        (10, "markets[2].symbols[0]", "BTC-PERP"),
        (10, "markets[2].symbols[0]", "BTC-PERP"),
        (10, "markets[2].symbols[1]", "ETH-PERP"),
    ]
    assert "whose l1 is already configured as BTCPFC at markets[0].symbols[0]" in found[0].message
    assert "whose trades is already configured as BTC-PERP at markets[1].symbols[1]" in (
        found[1].message
    )
    assert "whose trades is already configured as ETH-PERP at markets[1].symbols[0]" in (
        found[2].message
    )


def test_one_spelling_per_stream_is_fine(tmp_path: Path) -> None:
    # different channels under two spellings are different topics: nothing is folded together
    # (the conformance fake serves update:ETH-PERP-USDT_0 next to snapshotL1:ETHPFC)
    cfg = load_config(
        write(
            tmp_path,
            "data_dir: d\nmarkets:\n"
            "  - product: futures\n    symbols: [BTC-PERP-USDT, ETH-PERP-USDT]\n"
            "    channels: [book]\n"
            "  - product: futures\n    symbols: [BTC-PERP-USDT, ETHPFC]\n    channels: [l1]\n"
            "  - product: spot\n    symbols: [BTC-USD, BTC-USDT]\n    channels: [book]\n",
        ),
        catalog=CATALOG,
    )
    assert [(m.product, m.symbols, m.channels) for m in cfg.markets] == [
        ("futures", ("BTC-PERP-USDT", "ETH-PERP-USDT"), ("book",)),
        ("futures", ("BTC-PERP-USDT", "ETHPFC"), ("l1",)),
        ("spot", ("BTC-USD", "BTC-USDT"), ("book",)),
    ]


def test_check_config_rejects_two_spellings_with_exit_78(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = write(
        tmp_path,
        "data_dir: ./data\nmarkets:\n  - product: futures\n"
        "    symbols: [BTC-PERP]\n    channels: [book, l1]\n"
        "  - product: futures\n    symbols: [BTC-PERP-USDT]\n    channels: [l1]\n",
    )
    assert cli.main(["check-config", "--config", str(cfg), "--skip-data-dir"]) == EXIT_CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{cfg}: 1 problem:"
    assert err[1].startswith(
        f"  {cfg}:7: markets[1].symbols[0]: BTC-PERP-USDT is the futures market BTC-PERP, "
        "whose l1 is already configured as BTC-PERP at markets[0].symbols[0]"
    )
    assert err[1].endswith("(did you mean 'BTC-PERP'?)")
