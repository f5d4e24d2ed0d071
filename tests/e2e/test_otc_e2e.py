"""OTC quotes end to end: authKeyExpires (HMAC-SHA384) before the quote ops, quotes stored;
a refused login is a clear event and the daemon keeps running."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import db, until, write_config

from collector.config import load_config
from collector.service.daemon import Daemon
from collector.simulator import Simulator

pytestmark = pytest.mark.e2e

OTC = """
otc:
  quotes:
    - {symbol: BTC-USD, quantity: 1, currency: BTC}
    - {symbol: BTC-USD, quantity: 5, currency: BTC, side: buy, cl_order_id: big-buy}
"""


@pytest.mark.parametrize("secret", ["s3cret", "wrong"])
async def test_otc_quotes_need_a_valid_login(tmp_path: Path, secret: str) -> None:
    data = tmp_path / "data"
    async with Simulator(
        seed=2,
        symbols={"spot": ["BTC-USD"], "futures": ["BTC-PERP"], "otc": ["BTC-USD"]},
        rate=50,
        otc_rate=20,
        api_keys={"k1": "s3cret"},
    ) as sim:
        path = write_config(tmp_path / "c.yaml", data, sim.urls, extra=OTC)
        text = path.read_text().replace("symbols: [BTC-USD, ETH-USD]", "symbols: [BTC-USD]")
        path.write_text(text)
        # a refused login never acknowledges a quote: READY comes after ready_timeout
        daemon = Daemon(
            load_config(path),
            install_signals=False,
            ready_timeout=10 if secret != "wrong" else 0.5,
            environ={"BTSE_API_KEY": "k1", "BTSE_API_SECRET": secret},
        )
        await daemon.startup()
        assert daemon.ready.is_set() is (secret != "wrong")
        sup, norm = daemon.supervisor, daemon.normalizer
        assert sup is not None and norm is not None
        otc = sup.connections["otc#0"]
        if secret == "wrong":
            await until(lambda: otc.stats.reasons.get("auth_refused", 0) >= 1, "login refused")
        else:
            await until(
                lambda: (
                    daemon.writer is not None and daemon.writer.stats.rows.get("otc_quotes", 0) >= 6
                ),
                "quotes stored",
            )
        daemon.request_stop()
        await daemon.shutdown()
        assert daemon.exit_code == 0

    con = db(data)
    auth = con.execute(
        "SELECT detail FROM events WHERE kind = 'auth' AND connection = 'otc#0'"
    ).fetchall()
    if secret == "wrong":
        assert auth and all("refused" in d for (d,) in auth)
        assert not list((data / "otc_quotes").rglob("*.parquet")) or con.execute(
            "SELECT count(*) FROM otc_quotes"
        ).fetchall() == [(0,)]
        return
    assert auth == [("login ok",)]
    rows = con.execute(
        "SELECT quantity, currency, cl_order_id, count(*), count(buy_quote_id), count(sell_unit_price) "
        "FROM otc_quotes GROUP BY ALL ORDER BY quantity"
    ).fetchall()
    assert [r[:3] for r in rows] == [(1.0, "BTC", None), (5.0, "BTC", "big-buy")]
    assert all(r[3] >= 1 and r[4] == r[3] for r in rows)  # authenticated: every quote has an id
    assert rows[0][5] == rows[0][3] and rows[1][5] == 0  # side=buy: no sell side quoted
    unmatched = con.execute("SELECT count(*) FROM events WHERE kind = 'otc_unmatched'").fetchall()
    assert unmatched == [(0,)]
