"""`tradecast bench-trading`: bar in -> forecast -> order intent latency (1 symbol and a 500-symbol tick, in process
and over HTTP), headline -> updated intents, MCP tool call latency, and the backtest table of the warehouse, in one
run. Writes `benchmarks/results/trading-<device>.{json,md}`; needs `make run` first (the crypto champions exported,
`backtest_results` filled)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

LATENCY_ROWS = (("in_process_1", "in process, 1 symbol"), ("in_process_tick", "in process, {n}-symbol tick"),
                ("http_1", "HTTP POST /bars?decide=true, 1 symbol"),
                ("http_tick", "HTTP POST /bars?decide=true, {n}-symbol tick"),
                ("http_event_symbol", "HTTP POST /events (a symbol's headline) -> its intent"),
                ("http_event_market", "HTTP POST /events (market-wide headline) -> {n} intents"))


def _backtest() -> list[dict]:
    from resources import Settings, Warehouse

    table = Warehouse(settings=Settings()).query(
        "SELECT asset_class, strategy, source, total_return, ann_return, ann_vol, sharpe, sortino, max_drawdown, "
        "turnover, hit_rate, cost_drag, n_bars, start_ds, end_ds, cost_bps, slippage_bps FROM backtest_results "
        "ORDER BY asset_class, strategy = 'buy_and_hold' DESC, strategy, source")
    if table.empty:
        raise click.ClickException("backtest_results is empty: run `make run` (or trading_job per class) first")
    return json.loads(table.to_json(orient="records", date_format="iso"))


def reading(rows: list[dict]) -> list[str]:
    """Per class: which champion-driven strategies beat buy-and-hold on Sharpe after costs, which do not, and how
    far the champion's volatility forecast is from perfect foresight."""
    lines = []
    for asset_class in sorted({r["asset_class"] for r in rows}):
        own = {(r["strategy"], r["source"]): r for r in rows if r["asset_class"] == asset_class}
        hold = own[("buy_and_hold", "buy_and_hold")]
        champion = {s: r for (s, src), r in own.items() if src == "champion"}
        wins = [s for s, r in champion.items() if (r["sharpe"] or float("-inf")) > (hold["sharpe"] or float("-inf"))]
        losses = [s for s in champion if s not in wins]
        vt, bound = champion.get("vol_target"), own.get(("vol_target", "perfect_foresight"))
        naive = own.get(("vol_target", "naive"))
        line = (f"- **{asset_class}** ({hold['n_bars']} bars after {hold['cost_bps'] + hold['slippage_bps']:g} bps "
                f"per unit turnover): buy-and-hold Sharpe {hold['sharpe']:.2f}; beating it: "
                f"{', '.join(wins) or 'none'}; not: {', '.join(losses) or 'none'}.")
        if vt and bound and naive:
            line += (f" Volatility targeting on the champion's forecast: Sharpe {vt['sharpe']:.2f}, on the naive "
                     f"(last bar's) volatility {naive['sharpe']:.2f}, on perfect foresight {bound['sharpe']:.2f}.")
        lines.append(line)
    return lines


def to_markdown(doc: dict) -> str:
    n = doc["decisions"]["symbols"]
    lat = doc["decisions"]["latency"]
    out = [f"# Trading benchmark ({doc['device']}, {doc['decisions']['machine']['cpu_count']} cores)", "",
           f"Models: {json.dumps(doc['decisions']['models'])}; strategy `{doc['decisions']['strategy']}`; "
           f"{doc['decisions']['repeats']} samples per row.", "",
           "## Bar in -> forecast -> order intent", "", "| path | p50 ms | p99 ms |", "|---|---:|---:|"]
    out += [f"| {label.format(n=n)} | {lat[key]['p50_ms']:.2f} | {lat[key]['p99_ms']:.2f} |"
            for key, label in LATENCY_ROWS if key in lat]
    out += ["", "| target | limit ms | measured p99 ms | met |", "|---|---:|---:|---|"]
    out += [f"| {t['target']} | {t['limit_ms']:g} | {t['measured_ms']:.2f} | {'yes' if t['met'] else 'NO'} |"
            for t in doc["decisions"]["targets"]]
    out += ["", "## MCP tool calls (stdio, the SDK's client)", "", "| tool | p50 ms | p99 ms |", "|---|---:|---:|"]
    out += [f"| {tool} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |" for tool, v in doc["mcp"].items()]
    out += ["", "## Backtest (backtest_results: the champions' rolling-origin forecasts over their test bars)", "",
            "| class | strategy | source | total return | ann vol | Sharpe | max DD | turnover/yr | hit rate |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]

    def f(v, spec):
        return "n/a" if v is None else format(v, spec)

    out += [f"| {r['asset_class']} | {r['strategy']} | {r['source']} | {f(r['total_return'], '.2%')} | "
            f"{f(r['ann_vol'], '.2%')} | {f(r['sharpe'], '.2f')} | {f(r['max_drawdown'], '.2%')} | "
            f"{f(r['turnover'], '.1f')} | {f(r['hit_rate'], '.3f')} |" for r in doc["backtest"]]
    out += ["", "Total return over the test bars (crypto: 2 days of 5-minute bars, so annualised returns, in the JSON, "
            "extrapolate 48 hours); ann vol, Sharpe and turnover annualised at the class's bars per year."]
    return "\n".join([*out, "", "## Reading", "", *doc["reading"], ""])


@click.command("bench-trading")
@click.option("--repeats", type=int, default=200, show_default=True, help="samples per latency row")
@click.option("--symbols", type=int, default=500, show_default=True, help="symbols in the many-asset tick")
@click.option("--mcp-repeats", type=int, default=30, show_default=True, help="calls per MCP tool")
@click.option("--out", default="benchmarks/results", show_default=True, help="folder of the result files")
def bench_trading(repeats: int, symbols: int, mcp_repeats: int, out: str) -> None:
    """Bar -> intent latency (1 symbol, a many-symbol tick; in process and HTTP), headline -> intents, MCP tool
    latency and the backtest table -> benchmarks/results/trading-<device>.{json,md} (after `make run`)."""
    from datetime import UTC, datetime

    from serving.mcp_latency import measure_tool_latency
    from serving.trading_bench import decision_latency

    backtest = _backtest()
    click.echo(f"bar -> intent: {repeats} samples per path, {symbols}-symbol tick ...")
    decisions = decision_latency(repeats, symbols=symbols)
    click.echo(f"MCP tools: {mcp_repeats} calls each ...")
    mcp = measure_tool_latency(mcp_repeats)
    device = "cpu"  # the service runs ONNX Runtime's CPU provider here (make gpu-check covers CUDA)
    doc = {"schema": "tradecast.trading-bench/1", "created_at": datetime.now(UTC).isoformat(), "device": device,
           "cpu_count": os.cpu_count(), "decisions": decisions, "mcp": mcp, "backtest": backtest,
           "reading": reading(backtest)}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"trading-{device}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    markdown = to_markdown(doc)
    (folder / f"trading-{device}.md").write_text(markdown)
    click.echo(markdown)
