"""A file of trades (ts, symbol, price, amount) becomes OHLCV bars (issue 13.3): bad trades go to quarantine
with their raw line, and rows read = accepted + quarantined counts trades."""

from pathlib import Path

import pandas as pd
import pytest

from ingest.catalog import CatalogError, spec_from_dict
from ingest.load import load_sources
from tests.conftest import CANONICAL, warehouse_query, write_catalog
from tests.pipelines.test_cli import tradecast

# rows 1-4: BTC in minute 00:00, out of order, two trades at 00:00:50 (file order breaks the tie);
# row 5 negative price, row 6 not a number, row 9 negative amount; row 7 a trade without an amount
TRADES = """ts,symbol,price,amount
2024-01-01T00:00:10Z,BTC,100,1
2024-01-01T00:00:50Z,BTC,103,2
2024-01-01T00:00:05Z,BTC,101,0.5
2024-01-01T00:00:50Z,BTC,99,1
2024-01-01T00:01:00Z,BTC,-5,1
2024-01-01T00:01:30Z,BTC,abc,1
2024-01-01T00:01:40Z,BTC,104,
2024-01-01T00:00:20Z,ETH,10,3
2024-01-01T00:02:00Z,ETH,11,-1
2024-01-01T00:02:59Z,ETH,12,1.5
2024-01-01T00:02:01Z,ETH,13,0.5
"""
# (ts, symbol, open, high, low, close, volume, source_row of the opening trade, trades), by hand
EXPECTED = [
    ("2024-01-01 00:00", "BTC", 101.0, 103.0, 99.0, 99.0, 4.5, 3, 4),
    ("2024-01-01 00:01", "BTC", 104.0, 104.0, 104.0, 104.0, None, 7, 1),
    ("2024-01-01 00:00", "ETH", 10.0, 10.0, 10.0, 10.0, 3.0, 8, 1),
    ("2024-01-01 00:02", "ETH", 13.0, 13.0, 12.0, 12.0, 2.0, 11, 2),
]
COLUMNS = {c: c for c in ("ts", "symbol", "price", "amount")}


def _trades_spec(path, **extra):
    return spec_from_dict({"name": "ticks", "path": str(path), "table": "bars", "asset_class": "crypto",
                           "freq": "1min", "kind": "trades", "columns": COLUMNS, **extra}, path.parent)


def _bars(frame):
    rows = frame.sort_values(["symbol", "ts"])
    return [(t.strftime("%Y-%m-%d %H:%M"), s, o, h, lo, c, None if pd.isna(v) else v, r, n)
            for t, s, o, h, lo, c, v, r, n in rows[["ts", "symbol", "open", "high", "low", "close", "volume",
                                                    "source_row", "trades"]].itertuples(index=False)]


def test_trades_are_aggregated_into_ohlcv_bars_and_bad_trades_quarantined(tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text(TRADES)
    loaded = load_sources([_trades_spec(path)], "bars")
    assert _bars(loaded.split.accepted) == EXPECTED
    assert set(loaded.split.accepted.freq) == {"1min"} and set(loaded.split.accepted.asset_class) == {"crypto"}
    q = loaded.split.quarantined.sort_values("source_row")
    assert q.source_row.tolist() == [5, 6, 9] and set(q.table_name) == {"bars"}
    assert "price must be > 0 (-5.0)" in q.reasons.iloc[0] and "price: not a number 'abc'" in q.reasons.iloc[1]
    assert "amount must be >= 0" in q.reasons.iloc[2] and '"price":"abc"' in q.raw.iloc[1]  # the raw line kept
    [recon] = loaded.reconciliation().to_dict("records")
    assert (recon["kind"], recon["rows_read"], recon["rows_accepted"], recon["rows_quarantined"],
            recon["rows_stored"]) == ("trades", 11, 8, 3, 4)  # counts in trades; 4 bars built


def test_a_trade_bar_that_loses_its_key_sends_its_trades_to_quarantine(tmp_path):
    bars = tmp_path / "bars.csv"
    bars.write_text("ts,symbol,open,high,low,close,volume\n2024-01-01T00:00:00Z,BTC,1,1,1,1,1\n")
    ticks = tmp_path / "ticks.csv"
    ticks.write_text(TRADES)
    first = spec_from_dict({"name": "bars", "path": str(bars), "table": "bars", "asset_class": "crypto",
                            "freq": "1min", "columns": CANONICAL}, tmp_path)
    loaded = load_sources([first, _trades_spec(ticks)], "bars")  # catalog order: the bar file wins the key
    mine = loaded.split.accepted[loaded.split.accepted.source == "ticks"]
    assert _bars(mine) == EXPECTED[1:]
    q = loaded.split.quarantined.sort_values("source_row")
    assert q.source_row.tolist() == [1, 2, 3, 4, 5, 6, 9]  # one quarantine row per trade, each with its line
    lost = q[q.source_row <= 4]
    assert lost.reasons.str.startswith("its 1min bar was quarantined: duplicate key (asset_class, symbol, freq, "
                                       "ts): kept bars row 1").all()
    assert '"price":"103"' in lost.raw.iloc[1]
    recon = loaded.reconciliation().set_index("source")
    assert recon.loc["ticks", ["rows_read", "rows_accepted", "rows_quarantined", "rows_stored"]].tolist() == \
        [11, 4, 7, 3]


def test_trades_options_are_checked(tmp_path):
    from pipelines.registration import register_file

    path = tmp_path / "ticks.csv"
    path.write_text(TRADES)
    for kwargs, message in [({"trades": True}, "--trades needs --bar"),
                            ({"trades": True, "bar": "2s"}, "--bar: freq must be a whole number of minutes"),
                            ({"bar": "1min"}, "add --trades"),
                            ({"trades": True, "bar": "1min", "freq": "1min"}, "--freq is for bar files")]:
        with pytest.raises(CatalogError, match=message):
            register_file(str(path), asset_class="crypto", **kwargs)
    with pytest.raises(CatalogError, match="kind must be one of"):
        _trades_spec(path, table="news_events", asset_class=None)


def test_ingest_trades_cli_builds_bars_that_reconcile(home, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "empty.yaml", [])))
    path = tmp_path / "ticks.csv"
    path.write_text(TRADES)
    plain = tradecast("ingest", str(path), "--asset-class", "crypto", check=False)  # without --trades: a hint
    assert plain.returncode == 1 and "no column for ['close']" in plain.stderr and "--trades --bar 1min" in plain.stderr
    out = tradecast("ingest", str(path), "--asset-class", "crypto", "--trades", "--bar", "1min")
    assert "registered source 'user_ticks' (bars, crypto, 1min, from trades)" in out.stdout
    assert "user_ticks: counts are trades; they built 4 1min bars" in out.stdout
    bars = warehouse_query("SELECT *, NULL AS trades FROM bars ORDER BY symbol, ts")
    assert [b[:8] for b in _bars(bars)] == [e[:8] for e in EXPECTED]
    load = warehouse_query("SELECT * FROM source_loads WHERE source = 'user_ticks'").iloc[0]
    assert (load.kind, load.rows_read, load.rows_accepted, load.rows_quarantined, load.rows_stored) == \
        ("trades", 11, 8, 3, 4)
    assert warehouse_query("SELECT count(*) AS n FROM quarantine WHERE source = 'user_ticks'").n[0] == 3
    from assets.common import catalog_specs
    from resources import Settings

    [spec] = [s for s in catalog_specs(Settings()) if s.name == "user_ticks"]
    assert spec.kind == "trades" and spec.freq == "1min" and Path(spec.path).read_text() == TRADES


def test_incoming_sidecar_registers_a_trades_file(home):
    from pipelines.incoming import incoming_dir, process
    from resources import Settings

    root = incoming_dir(home)
    (root / "ticks.csv").write_text(TRADES)
    (root / "ticks.csv.yaml").write_text("asset_class: crypto\ntrades: true\nbar: 1min\n")
    [outcome] = process(root, {}, set(), settings=Settings())
    assert outcome.rejected is None and outcome.source == "user_ticks" and outcome.asset_class == "crypto"
    assert "kind: trades" in (home / "sources" / "sources.yaml").read_text()
