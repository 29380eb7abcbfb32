"""`bars` is keyed on (asset_class, symbol, freq, ts): one symbol in two asset classes loads both partitions
(issue 13.9); an old warehouse is re-keyed in place; source names are unique across the user and bundled catalogs."""

import pytest

from ingest.catalog import CatalogError
from tests.conftest import CANONICAL, ROOT, run_job, warehouse_query, write_catalog

BARS = "ts,symbol,open,high,low,close,volume\n2024-01-01,ABC,{p},{p},{p},{p},1\n2024-01-02,ABC,{p},{p},{p},{p},1\n"
OLD_BARS = """CREATE TABLE bars (
    ts TIMESTAMPTZ NOT NULL, symbol VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, freq VARCHAR NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE,
    source VARCHAR NOT NULL, source_row BIGINT, PRIMARY KEY (symbol, freq, ts))"""


def _pk(con):
    return con.execute("SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = 'bars' "
                       "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]


def test_one_symbol_in_two_asset_classes_loads_both_partitions(home, tmp_path, monkeypatch):
    entries = []
    for asset_class, price in (("equities", 50), ("crypto", 2)):  # ABC the stock and ABC the coin
        path = tmp_path / f"{asset_class}.csv"
        path.write_text(BARS.format(p=price))
        entries.append({"name": asset_class, "path": str(path), "table": "bars", "asset_class": asset_class,
                        "freq": "1d", "columns": CANONICAL})
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", entries)))
    for asset_class in ("equities", "crypto", "equities"):  # and reloading one leaves the other alone
        result = run_job("ingest_job", asset_class)
        assert result.success
    bars = warehouse_query("SELECT asset_class, symbol, count(*) AS n, max(close) AS close FROM bars GROUP BY ALL "
                           "ORDER BY 1")
    assert bars.values.tolist() == [["crypto", "ABC", 2, 2.0], ["equities", "ABC", 2, 50.0]]
    assert warehouse_query("SELECT count(*) AS n FROM quarantine").n[0] == 0


def test_the_key_is_one_definition_and_an_old_warehouse_is_rekeyed_keeping_its_rows(tmp_path):
    import duckdb

    from ingest.schemas import KEYS
    from storage.duck import connect
    from storage.schema import BARS_KEY

    assert KEYS["bars"] == BARS_KEY
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # a warehouse made before the change
        con.execute(OLD_BARS)
        con.execute("INSERT INTO bars VALUES ('2024-01-01', 'ABC', 'equities', '1d', 1, 1, 1, 1, 5, 'old', 1)")
    con = connect(path)
    try:
        assert _pk(con) == BARS_KEY
        assert con.execute("SELECT symbol, asset_class, volume, source FROM bars").fetchall() == \
            [("ABC", "equities", 5.0, "old")]
        con.execute("INSERT INTO bars VALUES ('2024-01-01', 'ABC', 'crypto', '1d', 1, 1, 1, 1, 5, 'new', 1)")
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO bars VALUES ('2024-01-01', 'ABC', 'crypto', '1d', 2, 2, 2, 2, 5, 'dup', 1)")
    finally:
        con.close()
    with connect(path) as again:  # once: a re-keyed warehouse is left as it is
        assert _pk(again) == BARS_KEY and again.execute("SELECT count(*) FROM bars").fetchone()[0] == 2


def test_a_user_catalog_entry_named_like_a_bundled_one_is_refused(home):
    from assets.common import catalog_specs
    from resources import Settings

    bundled = ROOT / "data" / "sources.yaml"
    user = home / "sources" / "sources.yaml"
    user.parent.mkdir(parents=True)
    write_catalog(user, [{"name": "crypto_daily", "path": str(ROOT / "tests/data/bad/duplicate_keys.csv"),
                          "table": "bars", "asset_class": "crypto", "freq": "1d", "columns": CANONICAL}])
    with pytest.raises(CatalogError) as err:
        catalog_specs(Settings())
    assert "source name 'crypto_daily' is in both" in str(err.value)
    assert str(user) in str(err.value) and str(bundled) in str(err.value)


def test_registering_a_bundled_name_is_refused_before_anything_is_written(home, tmp_path):
    from pipelines.registration import register_file

    path = tmp_path / "mine.csv"
    path.write_text(BARS.format(p=3))
    with pytest.raises(CatalogError) as err:
        register_file(str(path), asset_class="crypto", name="crypto_daily")
    assert "source name 'crypto_daily' is in both" in str(err.value)
    assert str(ROOT / "data" / "sources.yaml") in str(err.value) and "sources/sources.yaml" in str(err.value)
    assert not (home / "sources").exists()
