"""The warehouse's schema: the DDL of every table and the columns written to each, in DDL order."""

from models.benchmark.specs import LATENCY_COLUMNS, RESULT_COLUMNS
from models.events.spec import FEATURE_COLUMNS as EVENT_FEATURE_COLUMNS

# a symbol may exist in two asset classes (a ticker and a coin): bars are keyed on the class too
BARS_KEY = ["asset_class", "symbol", "freq", "ts"]
BARS_DDL = """
CREATE TABLE IF NOT EXISTS bars (
    ts TIMESTAMPTZ NOT NULL, symbol VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, freq VARCHAR NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE,
    source VARCHAR NOT NULL, source_row BIGINT, PRIMARY KEY (asset_class, symbol, freq, ts));"""
DDL = BARS_DDL + """
CREATE TABLE IF NOT EXISTS symbols (
    symbol VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, sector VARCHAR, company VARCHAR,
    source VARCHAR NOT NULL, PRIMARY KEY (symbol, asset_class));
CREATE TABLE IF NOT EXISTS news_events (
    ts TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, symbol VARCHAR, headline VARCHAR NOT NULL,
    sentiment DOUBLE NOT NULL, source_row BIGINT);
CREATE TABLE IF NOT EXISTS macro_events (
    ts TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, event_type VARCHAR NOT NULL, scheduled BOOLEAN,
    press_conference BOOLEAN, policy_surprise DOUBLE, source_row BIGINT, PRIMARY KEY (source, ts, event_type));
CREATE TABLE IF NOT EXISTS quarantine (
    table_name VARCHAR NOT NULL, source VARCHAR NOT NULL, source_file VARCHAR NOT NULL, source_row BIGINT,
    asset_class VARCHAR, reasons VARCHAR NOT NULL, raw VARCHAR, run_id VARCHAR, quarantined_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS source_loads (
    source VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, asset_class VARCHAR, path VARCHAR,
    rows_read BIGINT NOT NULL, rows_accepted BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL,
    run_id VARCHAR, loaded_at TIMESTAMPTZ NOT NULL);
ALTER TABLE source_loads ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE source_loads ADD COLUMN IF NOT EXISTS rows_stored BIGINT;
CREATE TABLE IF NOT EXISTS training_frames (
    asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL, unique_id VARCHAR NOT NULL, ds TIMESTAMP NOT NULL,
    y DOUBLE NOT NULL, PRIMARY KEY (asset_class, target, unique_id, ds));
CREATE TABLE IF NOT EXISTS model_evaluations (
    model_name VARCHAR NOT NULL, version VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL,
    model VARCHAR NOT NULL, mse DOUBLE, mae DOUBLE, mase DOUBLE, coverage_80 DOUBLE, n_windows BIGINT,
    n_series BIGINT, h INTEGER, step INTEGER, train_end TIMESTAMP, test_start TIMESTAMP, run_id VARCHAR,
    evaluated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS model_promotions (
    decided_at TIMESTAMPTZ NOT NULL, model_name VARCHAR NOT NULL, asset_class VARCHAR NOT NULL,
    target VARCHAR NOT NULL, version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, decision VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, challenger_mase DOUBLE, champion_version VARCHAR, champion_mase DOUBLE,
    best_baseline VARCHAR, best_baseline_mase DOUBLE, run_id VARCHAR);
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS qlike DOUBLE;
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS mse_var DOUBLE;
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS crps DOUBLE;
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS interval_width DOUBLE;
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS n_points BIGINT;
ALTER TABLE model_evaluations ADD COLUMN IF NOT EXISTS model_family VARCHAR;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS metric VARCHAR;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS alpha DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS challenger_score DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS best_baseline_score DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS champion_score DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS p_value_baseline DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS p_value_champion DOUBLE;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS n_windows BIGINT;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS n_points BIGINT;
CREATE TABLE IF NOT EXISTS evaluation_forecasts (
    model_name VARCHAR NOT NULL, version VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL,
    model VARCHAR NOT NULL, unique_id VARCHAR NOT NULL, cutoff TIMESTAMP NOT NULL, step INTEGER NOT NULL,
    ds TIMESTAMP NOT NULL, y DOUBLE, yhat DOUBLE, lo DOUBLE, hi DOUBLE, scale DOUBLE, run_id VARCHAR,
    PRIMARY KEY (model_name, version, model, unique_id, cutoff, step));
CREATE TABLE IF NOT EXISTS forecasts (
    asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ds TIMESTAMP NOT NULL,
    step INTEGER NOT NULL, yhat DOUBLE, lo DOUBLE, hi DOUBLE, model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS benchmark_results (
    bench_id VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, profile VARCHAR NOT NULL, device VARCHAR,
    device_name VARCHAR, seed INTEGER, dataset VARCHAR NOT NULL, asset_class VARCHAR, target VARCHAR,
    protocol VARCHAR, notes VARCHAR, h INTEGER, input_size INTEGER, freq VARCHAR, n_series INTEGER,
    n_windows_protocol INTEGER,
    step_size INTEGER, train_rows BIGINT, max_steps INTEGER, batch_size INTEGER, model VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, mse DOUBLE, mae DOUBLE, mase DOUBLE, n_windows INTEGER, naive_mase_same_windows DOUBLE,
    params BIGINT, steps_done INTEGER, train_seconds DOUBLE, seconds_per_step DOUBLE, eval_seconds DOUBLE,
    throughput_wps DOUBLE, peak_memory_mb DOUBLE, memory_kind VARCHAR, capped BOOLEAN, cap_note VARCHAR,
    mlflow_run_id VARCHAR, PRIMARY KEY (bench_id, dataset, model));
ALTER TABLE benchmark_results ADD COLUMN IF NOT EXISTS peak_rss_mb DOUBLE;
CREATE TABLE IF NOT EXISTS drift_metrics (
    computed_at TIMESTAMPTZ NOT NULL, asset_class VARCHAR NOT NULL, symbol VARCHAR NOT NULL, feature VARCHAR NOT NULL,
    psi DOUBLE, ks DOUBLE, perf_ratio DOUBLE, n_ref BIGINT, n_cur BIGINT, ref_end TIMESTAMP, drifted BOOLEAN,
    reason VARCHAR, watermark TIMESTAMPTZ NOT NULL, class_drifted BOOLEAN NOT NULL, verdict VARCHAR, run_id VARCHAR);
CREATE TABLE IF NOT EXISTS event_features (
    asset_class VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ds TIMESTAMP NOT NULL, freq VARCHAR NOT NULL,
    news_logn_short DOUBLE NOT NULL, news_logn_long DOUBLE NOT NULL, news_sent_mean_short DOUBLE NOT NULL,
    news_sent_mean_long DOUBLE NOT NULL, news_sent_min_short DOUBLE NOT NULL, news_sent_min_long DOUBLE NOT NULL,
    news_sent_max_short DOUBLE NOT NULL, news_sent_max_long DOUBLE NOT NULL, news_age DOUBLE NOT NULL,
    mkt_logn_short DOUBLE NOT NULL, mkt_logn_long DOUBLE NOT NULL, mkt_sent_mean_short DOUBLE NOT NULL,
    mkt_sent_mean_long DOUBLE NOT NULL, fomc_surprise DOUBLE NOT NULL, fomc_day DOUBLE NOT NULL,
    PRIMARY KEY (asset_class, symbol, ds));
CREATE TABLE IF NOT EXISTS live_metrics (
    recorded_at TIMESTAMPTZ NOT NULL, asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, arm VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL, origin_ts TIMESTAMPTZ NOT NULL, step INTEGER NOT NULL, ts TIMESTAMPTZ NOT NULL,
    yhat DOUBLE NOT NULL, y DOUBLE NOT NULL, abs_error DOUBLE NOT NULL, scale DOUBLE);
CREATE TABLE IF NOT EXISTS benchmark_latency (
    bench_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, model VARCHAR NOT NULL, path VARCHAR NOT NULL,
    batch INTEGER NOT NULL, p50_ms DOUBLE, p95_ms DOUBLE, repeats INTEGER, windows_per_s DOUBLE, skipped VARCHAR,
    PRIMARY KEY (bench_id, dataset, model, path, batch));
CREATE TABLE IF NOT EXISTS search_trials (
    search_id VARCHAR NOT NULL, searched_at TIMESTAMPTZ NOT NULL, model_name VARCHAR NOT NULL,
    asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL, trial_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
    stopped_early BOOLEAN, val_loss DOUBLE, last_step INTEGER, seconds DOUBLE, config VARCHAR NOT NULL,
    error VARCHAR, is_best BOOLEAN NOT NULL, train_end TIMESTAMP, mlflow_run_id VARCHAR, parent_run_id VARCHAR,
    run_id VARCHAR, PRIMARY KEY (search_id, trial_id));
CREATE TABLE IF NOT EXISTS signals (
    asset_class VARCHAR NOT NULL, strategy VARCHAR NOT NULL, source VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
    ds TIMESTAMP NOT NULL, cutoff TIMESTAMP, vol_hat DOUBLE, mu DOUBLE, position DOUBLE NOT NULL,
    vol_model VARCHAR, vol_version VARCHAR, close_model VARCHAR, close_version VARCHAR, params VARCHAR NOT NULL,
    run_id VARCHAR, created_at TIMESTAMPTZ NOT NULL, period VARCHAR NOT NULL,
    PRIMARY KEY (asset_class, strategy, source, symbol, ds));
CREATE TABLE IF NOT EXISTS backtest_results (
    asset_class VARCHAR NOT NULL, strategy VARCHAR NOT NULL, source VARCHAR NOT NULL, start_ds TIMESTAMP,
    end_ds TIMESTAMP, n_bars BIGINT, n_symbols BIGINT, ann_return DOUBLE, ann_vol DOUBLE, sharpe DOUBLE,
    sortino DOUBLE, max_drawdown DOUBLE, turnover DOUBLE, hit_rate DOUBLE, total_return DOUBLE, cost_drag DOUBLE,
    cost_bps DOUBLE, slippage_bps DOUBLE, vol_version VARCHAR, close_version VARCHAR, mlflow_run_id VARCHAR,
    run_id VARCHAR, computed_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (asset_class, strategy, source));
"""
# columns written per table, in DDL order
COLUMNS = {
    "bars": ["ts", "symbol", "asset_class", "freq", "open", "high", "low", "close", "volume", "source", "source_row"],
    "symbols": ["symbol", "asset_class", "sector", "company", "source"],
    "news_events": ["ts", "source", "symbol", "headline", "sentiment", "source_row"],
    "macro_events": ["ts", "source", "event_type", "scheduled", "press_conference", "policy_surprise", "source_row"],
    "quarantine": ["table_name", "source", "source_file", "source_row", "asset_class", "reasons", "raw", "run_id",
                   "quarantined_at"],
    "source_loads": ["source", "table_name", "asset_class", "path", "rows_read", "rows_accepted",
                     "rows_quarantined", "run_id", "loaded_at", "kind", "rows_stored"],
    "training_frames": ["asset_class", "target", "unique_id", "ds", "y"],
    "model_evaluations": ["model_name", "version", "asset_class", "target", "model", "mse", "mae", "mase",
                          "coverage_80", "n_windows", "n_series", "h", "step", "train_end", "test_start", "run_id",
                          "evaluated_at", "qlike", "mse_var", "crps", "interval_width", "n_points", "model_family"],
    "evaluation_forecasts": ["model_name", "version", "asset_class", "target", "model", "unique_id", "cutoff", "step",
                             "ds", "y", "yhat", "lo", "hi", "scale", "run_id"],
    "model_promotions": ["decided_at", "model_name", "asset_class", "target", "version", "model_kind", "decision",
                         "reason", "challenger_mase", "champion_version", "champion_mase", "best_baseline",
                         "best_baseline_mase", "run_id", "metric", "alpha", "challenger_score", "best_baseline_score",
                         "champion_score", "p_value_baseline", "p_value_champion", "n_windows", "n_points"],
    "forecasts": ["asset_class", "target", "symbol", "ds", "step", "yhat", "lo", "hi", "model_name",
                  "model_version", "model_kind", "created_at"],
    "benchmark_results": ["bench_id", "created_at", *RESULT_COLUMNS, "mlflow_run_id"],
    "drift_metrics": ["computed_at", "asset_class", "symbol", "feature", "psi", "ks", "perf_ratio", "n_ref", "n_cur",
                      "ref_end", "drifted", "reason", "watermark", "class_drifted", "verdict", "run_id"],
    "benchmark_latency": ["bench_id", *LATENCY_COLUMNS],
    "live_metrics": ["recorded_at", "asset_class", "target", "model_name", "model_version", "model_kind", "arm",
                     "symbol", "origin_ts", "step", "ts", "yhat", "y", "abs_error", "scale"],
    "event_features": ["asset_class", "symbol", "ds", "freq", *EVENT_FEATURE_COLUMNS],
    "search_trials": ["search_id", "searched_at", "model_name", "asset_class", "target", "trial_id", "status",
                      "stopped_early", "val_loss", "last_step", "seconds", "config", "error", "is_best", "train_end",
                      "mlflow_run_id", "parent_run_id", "run_id"],
    "signals": ["asset_class", "strategy", "source", "symbol", "ds", "cutoff", "vol_hat", "mu", "position",
                "vol_model", "vol_version", "close_model", "close_version", "params", "run_id", "created_at", "period"],
    "backtest_results": ["asset_class", "strategy", "source", "start_ds", "end_ds", "n_bars", "n_symbols",
                         "ann_return", "ann_vol", "sharpe", "sortino", "max_drawdown", "turnover", "hit_rate",
                         "total_return", "cost_drag", "cost_bps", "slippage_bps", "vol_version", "close_version",
                         "mlflow_run_id", "run_id", "computed_at"],
}
