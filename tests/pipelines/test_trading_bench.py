"""The trading benchmark's reading names wins and losses against buy-and-hold exactly as the table says."""

from pipelines.cli.trading import reading, to_markdown


def _row(strategy, source, sharpe, **extra):
    return {"asset_class": "fx", "strategy": strategy, "source": source, "sharpe": sharpe, "n_bars": 240,
            "cost_bps": 1.0, "slippage_bps": 1.0, "ann_return": 0.01, "ann_vol": 0.1, "max_drawdown": -0.05,
            "turnover": 12.0, "hit_rate": 0.5, "cost_drag": 0.001, "total_return": 0.02, **extra}


def test_the_reading_lists_which_champion_strategies_beat_buy_and_hold():
    rows = [_row("buy_and_hold", "buy_and_hold", 0.40), _row("vol_target", "champion", 0.55),
            _row("vol_target", "naive", 0.50), _row("vol_target", "perfect_foresight", 0.90),
            _row("direction", "champion", -0.20), _row("direction", "naive", None, turnover=0.0)]
    [line] = reading(rows)
    assert "buy-and-hold Sharpe 0.40" in line
    assert "beating it: vol_target;" in line and "not: direction." in line
    assert "champion's forecast: Sharpe 0.55, on the naive (last bar's) volatility 0.50, on perfect foresight 0.90" \
        in line
    doc = {"device": "cpu", "decisions": {
        "symbols": 500, "machine": {"cpu_count": 2}, "models": {}, "strategy": "vol_target", "repeats": 3,
        "latency": {"http_1": {"p50_ms": 3.0, "p99_ms": 4.5}},
        "targets": [{"target": "http_1_p99_ms", "limit_ms": 10.0, "measured_ms": 4.5, "met": True}]},
        "mcp": {"get_forecast": {"p50_ms": 2.0, "p99_ms": 3.0}}, "backtest": rows, "reading": [line]}
    markdown = to_markdown(doc)
    assert "| HTTP POST /bars?decide=true, 1 symbol | 3.00 | 4.50 |" in markdown
    assert "| fx | direction | naive | 2.00% | 10.00% | n/a |" in markdown
