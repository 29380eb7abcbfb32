"""The `tradecast` command as a user runs it (a subprocess, a temporary TRADECAST_HOME)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, warehouse_query, write_catalog

MY_CSV = """ts,symbol,open,high,low,close,volume
2024-01-01T00:00:00Z,MYCOIN,10,11,9,10.5,100
2024-01-01T01:00:00Z,MYCOIN,10.5,12,10,11,200
2024-01-01T02:00:00Z,MYCOIN,11,10,9,10.2,50
2024-01-01T03:00:00Z,MYCOIN,abc,11,9,10,10
2024-01-01T04:00:00Z,MYCOIN,10,11,9,10,10
2024-01-01T04:00:00Z,MYCOIN,10,11,9,10.1,10
"""


def tradecast(*args, check=True):
    exe = [sys.executable, "-m", "pipelines.cli", *args]
    out = subprocess.run(exe, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _state():
    return warehouse_query("""SELECT (SELECT count(*) FROM bars) AS bars, (SELECT count(*) FROM quarantine) AS q,
                                     (SELECT string_agg(reasons, ' | ' ORDER BY source_row) FROM quarantine
                                      WHERE source = 'user_my') AS reasons""").iloc[0].to_dict()


@pytest.mark.slow
def test_ingest_canonical_file_with_bad_rows_next_to_the_bundled_data(home, tmp_path):
    path = tmp_path / "my.csv"
    path.write_text(MY_CSV)
    out = tradecast("ingest", str(path), "--asset-class", "crypto")
    assert "registered source 'user_my' (bars, crypto, 1h)" in out.stdout
    assert re.search(r"user_my\s*\|\s*6\s*\|\s*3\s*\|\s*3\s*\|", out.stdout), out.stdout
    mine = warehouse_query("SELECT * FROM source_loads WHERE source = 'user_my'").iloc[0]
    assert (mine.rows_read, mine.rows_accepted, mine.rows_quarantined) == (6, 3, 3)
    first = _state()
    assert "high < max(open, close)" in first["reasons"] and "not a number 'abc'" in first["reasons"]
    assert "duplicate key (asset_class, symbol, freq, ts): kept user_my row 5" in first["reasons"]
    assert warehouse_query("SELECT count(DISTINCT source) AS n FROM bars").n[0] == 4  # + the 3 bundled crypto
    tradecast("ingest", str(path), "--asset-class", "crypto")
    assert _state() == first  # a second run changes nothing
    assert (home / "sources" / "files" / "user_my.csv").read_text() == MY_CSV


def test_ingest_with_a_column_mapping_and_a_constant_symbol(home, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "empty.yaml", [])))
    path = tmp_path / "EURUSD_export.csv"
    path.write_text("Time,Open,High,Low,Close,Volume\n02.01.2017 00:00:00.000,1.05,1.06,1.04,1.055,10\n"
                    "02.01.2017 01:00:00.000,1.055,1.06,1.05,1.058,12\n"
                    "02.01.2017 02:00:00.000,1.058,1.07,1.05,1.06,9\n")
    tradecast("ingest", str(path), "--asset-class", "fx", "--symbol", "EURUSD", "--ts-format", "%d.%m.%Y %H:%M:%S.%f",
              "--map", "ts=Time,open=Open,high=High,low=Low,close=Close,volume=Volume", "--name", "my_eurusd")
    bars = warehouse_query("SELECT * FROM bars ORDER BY ts")
    assert list(bars.symbol.unique()) == ["EURUSD"] and list(bars.freq.unique()) == ["1h"]
    assert str(bars.ts.iloc[0]) == "2017-01-02 00:00:00+00:00" and bars.close.tolist() == [1.055, 1.058, 1.06]
    assert bars.source.unique().tolist() == ["my_eurusd"]


@pytest.mark.parametrize("args,message", [
    (["--asset-class", "fx"],
     "no column for ['close']; the file has ['ts', 'symbol', 'price']. Use --map close=<column>"),
    (["--asset-class", "fx", "--map", "closing=price"], "'closing' is not a column of bars"),
    (["--asset-class", "fx", "--map", "close=Price"], "missing required column(s) ['Price']"),
    ([], "--asset-class is required"),
])
def test_ingest_errors_are_clear_and_register_nothing(home, tmp_path, args, message):
    path = tmp_path / "prices.csv"
    path.write_text("ts,symbol,price\n2024-01-01,A,1\n")
    out = tradecast("ingest", str(path), *args, check=False)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (home / "sources" / "sources.yaml").exists()


@pytest.mark.slow
def test_run_prints_rows_per_source_model_metrics_and_promotion_decisions(home):
    out = tradecast("run", "--asset-class", "fx", "--max-rows", "2000", "--steps", "3")
    for source in ("fx_daily_lstnet", "eurusd_1h", "reddit_worldnews", "fomc_actions"):
        assert source in out.stdout
    assert "read = accepted + quarantined for every source" in out.stdout
    assert "check_market_bars_counts_reconcile" in out.stdout and "FAILED (ERROR)" not in out.stdout
    for target in ("close", "volatility"):  # metrics of NHITS next to every baseline, per target
        for model in ("nhits", "naive", "seasonal_naive", "window_mean"):
            assert re.search(rf"\| fx\s+\| {target}\s+\|\s+\d+ \| {model}\s", out.stdout), (target, model)
    for model in ("har", "ewma", "ewma_fitted", "garch"):  # the field's volatility baselines, same windows
        assert re.search(rf"\| fx\s+\| volatility\s+\|\s+\d+ \| {model}\s+\| field", out.stdout), model
    assert re.search(r"\| fx\s+\| close\s+\|\s+\d+ \| rw_drift\s+\| field", out.stdout), out.stdout
    for target, metric in (("close", "mase"), ("volatility", "qlike")):  # each decision with its loss and p-value
        assert re.search(rf"\| fx\s+\| {target}\s+\|\s+\d+ \| (promoted|refused)\s+\| {metric}\s+\|", out.stdout), \
            out.stdout
    for target in ("close", "volatility"):  # the gate's verdict per partition; a refusal is no failure
        assert re.search(rf"\| champion_model \(promotion gate\)\s+\| fx\|{target}\s+\| (promoted|refused: champion "
                         r"stays|not significantly better \((p = [\d.e-]+|too few windows for the test)\): champion "
                         r"stays)\s+\|", out.stdout), out.stdout
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:  # the instance the UI reads
        jobs = sorted(r.job_name for r in instance.get_runs())
        assert {r.status for r in instance.get_runs()} == {dg.DagsterRunStatus.SUCCESS}  # red means broken
    assert jobs == ["benchmark_job", "event_features_job", "events_job", "export_job", "export_job", "forecast_job",
                    "forecast_job", "ingest_job", "trading_job", "train_job", "train_job"]
    # the backtest table: buy-and-hold and every strategy on the champion's forecasts, same bars
    for strategy in ("buy_and_hold", "vol_target", "vol_target_directional", "direction"):
        assert re.search(rf"\| fx\s+\| {strategy}\s+\|", out.stdout), strategy
    # the quick benchmark: every model's MASE per data set, and training time relative to NHITS
    assert "Training seconds relative to NHITS" in out.stdout
    for dataset in ("eurusd-hourly-close", "eurusd-hourly-volatility", "exchange-paper-h96"):
        assert re.search(rf"\| {dataset}\s+\|(\s+[\d.]+\s+\|){{8}}", out.stdout), dataset


def cli_imports() -> dict[str, set[str]]:
    """Each module of the `pipelines.cli` package -> the modules of the package it imports (at any nesting)."""
    import ast

    folder = ROOT / "pipelines" / "cli"
    modules = {"pipelines.cli" if p.stem == "__init__" else f"pipelines.cli.{p.stem}": p for p in folder.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package itself
                    base = ".".join(["pipelines.cli", *filter(None, [base])])
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_cli_package_has_no_import_circle():
    graph = cli_imports()
    assert {"pipelines.cli", "pipelines.cli.runner", "pipelines.cli.__main__"} <= set(graph)
    assert graph["pipelines.cli.runner"] == set()  # the job runner imports no command module

    def loop(start, node, seen):  # a path from node back to start, through modules not yet on it
        return any(nxt == start or (nxt not in seen and loop(start, nxt, seen | {nxt})) for nxt in graph[node])

    circles = [m for m in graph if loop(m, m, {m})]
    assert not circles, {m: graph[m] for m in circles}
    commands = set(graph) - {"pipelines.cli", "pipelines.cli.__main__"}
    assert not any("pipelines.cli" in graph[m] for m in commands)  # commands never import the group


def test_help_lists_every_command():
    out = tradecast("--help")
    assert out.stdout.startswith("Usage: python -m pipelines.cli [OPTIONS] COMMAND"), out.stdout
    listed = re.findall(r"^  (\S+)\s{2,}", out.stdout.split("Commands:")[1], flags=re.M)
    assert listed == ["bench", "bench-events", "bench-scale", "bench-serve", "bench-trading", "gpu-check", "ingest",
                      "mcp", "quality", "ray-stop", "replay", "run", "serve", "tune"]
