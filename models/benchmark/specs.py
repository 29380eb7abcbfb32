"""What a benchmark run is: the data set's protocol (:class:`BenchSpec`) and the budget (:class:`Budget`).

Pure Python (cheap to import). Every neural model of one data set gets the same
``Budget``: the same optimizer steps, training windows per step, learning rate,
seed and time caps, so cost and accuracy are compared on equal terms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

LATENCY_BATCHES: tuple[int, ...] = (1, 16, 64, 256)
Profile = Literal["quick", "full"]
# the frames run_benchmark returns (and, with bench_id/created_at/mlflow_run_id, the DuckDB tables)
LATENCY_COLUMNS = ["dataset", "model", "path", "batch", "p50_ms", "p95_ms", "repeats", "windows_per_s", "skipped"]
RESULT_COLUMNS = ["profile", "device", "device_name", "seed", "dataset", "asset_class", "target", "protocol", "notes",
                  "h", "input_size", "freq", "n_series", "n_windows_protocol", "step_size", "train_rows", "max_steps",
                  "batch_size", "model", "kind", "mse", "mae", "mase", "n_windows", "naive_mase_same_windows",
                  "params", "steps_done", "train_seconds", "seconds_per_step", "eval_seconds", "throughput_wps",
                  "peak_memory_mb", "peak_rss_mb", "memory_kind", "capped", "cap_note"]


@dataclass(frozen=True)
class BenchSpec:
    """One data set's forecasting protocol.

    The test part is the last ``h + step_size * (n_windows - 1)`` timestamps
    (rolling origins, no refit); the validation part is the ``val_size``
    timestamps before it; the models train on everything earlier.
    """

    name: str
    h: int
    input_size: int
    freq: str
    season_length: int
    n_windows: int
    step_size: int
    val_size: int
    scaler_type: str = "robust"  # neuralforecast's per-window scaler; 'identity' when the data is z-scored
    n_pool_kernel_size: tuple[int, ...] = (2, 2, 1)  # NHITS only
    n_freq_downsample: tuple[int, ...] = (4, 2, 1)  # NHITS only
    asset_class: str = ""
    target: str = ""
    protocol: str = "rolling-origin"
    notes: str = ""

    def __post_init__(self) -> None:
        for field in ("h", "input_size", "season_length", "n_windows", "step_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"BenchSpec.{field} must be a positive integer (got {value!r})")
        if self.val_size < 0:
            raise ValueError(f"BenchSpec.val_size must be >= 0 (got {self.val_size!r})")

    @property
    def step(self) -> int:  # the name models.evaluation expects
        return self.step_size

    @property
    def test_size(self) -> int:
        return self.h + self.step_size * (self.n_windows - 1)

    def replace(self, **changes: Any) -> BenchSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Budget:
    """The same for every neural model of a run. Caps are wall-clock seconds per model (training and evaluation:
    None = no cap)."""

    profile: str = "quick"
    max_steps: int = 10
    batch_size: int = 16  # training windows per optimizer step (a multivariate model: samples x n_series)
    learning_rate: float = 1e-3
    seed: int = 1
    max_series: int | None = 4  # series per data set (the most recent, then longest)
    max_test_windows: int | None = 2  # rolling windows actually scored (None: the protocol's all)
    train_cap_s: float | None = 6.0  # training stops here (Lightning max_time); reported as capped; None: no cap
    eval_cap_s: float | None = 6.0  # predicted test-window inference beyond this -> fewer windows; None: no cap
    latency_cap_s: float = 4.0  # per model, forward + predict; larger batches skipped beyond it
    latency_repeats: int = 5  # timed calls per batch size (after warm-up)
    latency_warmup: int = 1
    predict_repeats: int = 3  # timed NeuralForecast.predict calls per batch size
    batches: tuple[int, ...] = LATENCY_BATCHES

    def __post_init__(self) -> None:
        for field in ("max_steps", "batch_size", "latency_repeats", "predict_repeats"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Budget.{field} must be a positive integer (got {value!r})")
        caps = {"train_cap_s": self.train_cap_s, "eval_cap_s": self.eval_cap_s, "latency_cap_s": self.latency_cap_s}
        bad = {k: v for k, v in caps.items() if (v is None and k == "latency_cap_s") or (v is not None and not v > 0)}
        if bad:
            raise ValueError(f"Budget caps must be > 0 seconds (got {bad}); train_cap_s / eval_cap_s None = no cap")

    def replace(self, **changes: Any) -> Budget:
        return dataclasses.replace(self, **changes)


# quick: minutes for everything on 2 CPU cores (make run, tests); full: make bench, up to about an hour on CPU
BUDGETS: dict[str, Budget] = {
    "quick": Budget(),
    "full": Budget(profile="full", max_steps=500, batch_size=32, max_series=8, max_test_windows=None,
                   train_cap_s=90.0, eval_cap_s=40.0, latency_cap_s=20.0, latency_repeats=20,
                   latency_warmup=3, predict_repeats=5),
}


def budget_for(profile: str, *, no_caps: bool = False, **overrides: Any) -> Budget:
    """The profile's budget with the given (non-None) overrides; ``no_caps``: no training or evaluation time cap
    (the latency sweep keeps its budget: it only limits how long latency is measured, and says what it skipped)."""
    if profile not in BUDGETS:
        raise ValueError(f"profile must be one of {sorted(BUDGETS)} (got {profile!r})")
    budget = BUDGETS[profile].replace(**{k: v for k, v in overrides.items() if v is not None})
    return budget.replace(train_cap_s=None, eval_cap_s=None) if no_caps else budget


# The data sets of the issue: crypto 5-min (the hft config), equities daily (the daily config), EURUSD hourly,
# and the N-HiTS paper protocol on the exchange-rate file (z-scored, 70/10/20, h=96, input 5h, step-1 windows).
MARKET_SPECS: dict[str, BenchSpec] = {
    "crypto": BenchSpec(name="crypto-5min", h=12, input_size=288, freq="5min", season_length=288,
                        n_windows=12, step_size=12, val_size=0, n_pool_kernel_size=(8, 4, 1),
                        n_freq_downsample=(8, 4, 1), asset_class="crypto"),
    "equities": BenchSpec(name="equities-daily", h=30, input_size=365, freq="B", season_length=5,
                          n_windows=4, step_size=30, val_size=0, n_pool_kernel_size=(4, 2, 1),
                          n_freq_downsample=(4, 2, 1), asset_class="equities"),
    "fx": BenchSpec(name="eurusd-hourly", h=24, input_size=168, freq="h", season_length=24,
                    n_windows=10, step_size=24, val_size=0, n_pool_kernel_size=(8, 4, 1),
                    n_freq_downsample=(8, 4, 1), asset_class="fx"),
}

PAPER_H = 96
PAPER_SPEC = BenchSpec(
    name="exchange-paper-h96", h=PAPER_H, input_size=5 * PAPER_H, freq="B", season_length=5,
    n_windows=1, step_size=1, val_size=0,  # set from the 70/10/20 split by datasets.paper_protocol
    scaler_type="identity", n_pool_kernel_size=(2, 2, 1), n_freq_downsample=(24, 12, 1),
    asset_class="fx", target="close", protocol="nhits-paper",
    notes="z-score with training statistics, 70/10/20 split, MAE loss, 3 stacks, rolling step-1 windows; "
          "published N-HiTS Exchange h=96: MSE 0.092, MAE 0.211 (the last value scores about MSE 0.081 there)",
)
