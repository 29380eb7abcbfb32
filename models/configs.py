"""NHITS configurations per asset class (the report's ``hft`` and ``daily`` specs).

Pure Python: importing this module must stay cheap (no torch, no neuralforecast).

Two report configs:

* ``hft``   (crypto, 5-minute bars): h=12 (one hour), input_size=288 (one day),
  pooling/downsampling [8, 4, 1], batch 256, lr 1e-3, gradient clipping 1.0.
* ``daily`` (equities, fx, business-day bars): h=30, input_size=365,
  pooling/downsampling [4, 2, 1], batch 64, lr 5e-4.

"batch" in the report means training windows per optimizer step, which is
NHITS' ``windows_batch_size``; NHITS' own ``batch_size`` counts *series* per step
and is ``series_batch_size`` here.

Two profiles: ``quick`` (small step budget, sized so one train + rolling-origin
evaluation of one class/target takes well under a minute on 2 CPU cores) and
``full`` (real budgets with validation-based early stopping).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from domain.vocabulary import ASSET_CLASSES

LOSSES: tuple[str, ...] = ("mse", "mae", "mase", "quantile", "studentt")
SCALERS: tuple[str, ...] = ("identity", "standard", "robust", "robust-iqr", "minmax")
Profile = Literal["quick", "full"]


@dataclass(frozen=True)
class NHITSSpec:
    """Everything needed to build, train and evaluate one NHITS model.

    Sequences are tuples so the spec is hashable; :meth:`to_params` gives a flat
    dict (e.g. for experiment tracking). Invalid values raise ``ValueError``
    naming the offending field.
    """

    name: str
    h: int
    input_size: int
    freq: str
    season_length: int
    n_pool_kernel_size: tuple[int, ...] = (2, 2, 1)
    n_freq_downsample: tuple[int, ...] = (4, 2, 1)
    n_blocks: tuple[int, ...] = (1, 1, 1)
    mlp_units: tuple[tuple[int, ...], ...] = ((512, 512), (512, 512), (512, 512))
    batch_size: int = 64  # windows per optimizer step (NHITS windows_batch_size)
    series_batch_size: int = 32  # series sampled per step (NHITS batch_size)
    learning_rate: float = 1e-3
    max_steps: int = 1000
    loss: str = "mae"
    val_check_steps: int = 100
    early_stop_patience_steps: int = -1  # in validation checks; -1 disables
    val_size: int = 0  # timesteps held out at the end of the training part
    scaler_type: str = "robust"
    gradient_clip_val: float | None = None
    dropout_prob_theta: float = 0.0
    seed: int = 1
    n_windows: int = 4  # rolling-origin test windows
    step_size: int | None = None  # between test cutoffs; None -> h
    hist_exog: tuple[str, ...] = ()  # historical exogenous columns of the frame (event features), input only
    futr_exog: tuple[str, ...] = ()  # future exogenous columns (known in advance), input and horizon

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def step(self) -> int:
        """Distance between consecutive test cutoffs (``step_size`` or ``h``)."""
        return self.step_size if self.step_size is not None else self.h

    @property
    def test_size(self) -> int:
        """Timesteps per series covered by the rolling-origin test windows."""
        return self.h + self.step * (self.n_windows - 1)

    @property
    def min_length(self) -> int:
        """Shortest series that can be trained (input + val) and evaluated (test)."""
        return self.input_size + self.val_size + self.test_size + self.h

    def replace(self, **changes: Any) -> NHITSSpec:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def exog(self) -> tuple[str, ...]:
        """All exogenous columns the model reads (historical, then future)."""
        return self.hist_exog + self.futr_exog

    def to_params(self) -> dict[str, Any]:
        """Flat ``{field: scalar-or-str}`` dict, convenient for logging params."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out[f.name] = str([list(v) if isinstance(v, tuple) else v for v in value])
            else:
                out[f.name] = value
        return out


def _fail(field_name: str, message: str, value: Any) -> None:
    raise ValueError(f"NHITSSpec.{field_name} {message} (got {value!r})")


def _validate(spec: NHITSSpec) -> None:
    for name in ("h", "input_size", "season_length", "batch_size", "series_batch_size",
                 "max_steps", "val_check_steps", "n_windows"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            _fail(name, "must be a positive integer", value)
    if spec.step_size is not None and (not isinstance(spec.step_size, int) or spec.step_size <= 0):
        _fail("step_size", "must be a positive integer or None", spec.step_size)
    if not isinstance(spec.val_size, int) or spec.val_size < 0:
        _fail("val_size", "must be a non-negative integer", spec.val_size)
    if spec.early_stop_patience_steps > 0 and spec.val_size == 0:
        _fail("val_size", "must be > 0 when early_stop_patience_steps > 0", spec.val_size)
    if not spec.learning_rate > 0:
        _fail("learning_rate", "must be > 0", spec.learning_rate)
    if spec.gradient_clip_val is not None and not spec.gradient_clip_val > 0:
        _fail("gradient_clip_val", "must be > 0 or None", spec.gradient_clip_val)
    if not 0.0 <= spec.dropout_prob_theta < 1.0:
        _fail("dropout_prob_theta", "must be in [0, 1)", spec.dropout_prob_theta)
    n_stacks = len(spec.n_pool_kernel_size)
    if n_stacks == 0:
        _fail("n_pool_kernel_size", "must not be empty", spec.n_pool_kernel_size)
    for name in ("n_freq_downsample", "n_blocks", "mlp_units"):
        if len(getattr(spec, name)) != n_stacks:
            _fail(name, f"must have one entry per stack, i.e. len(n_pool_kernel_size)={n_stacks}",
                  getattr(spec, name))
    for name in ("n_pool_kernel_size", "n_freq_downsample", "n_blocks"):
        if any(not isinstance(v, int) or v <= 0 for v in getattr(spec, name)):
            _fail(name, "must contain positive integers only", getattr(spec, name))
    if any(len(units) == 0 or any(u <= 0 for u in units) for units in spec.mlp_units):
        _fail("mlp_units", "must hold non-empty tuples of positive layer widths", spec.mlp_units)
    if spec.loss not in LOSSES:
        _fail("loss", f"must be one of {list(LOSSES)}", spec.loss)
    for name in ("hist_exog", "futr_exog"):
        value = getattr(spec, name)
        if not isinstance(value, tuple) or any(not isinstance(c, str) or not c for c in value):
            _fail(name, "must be a tuple of column names", value)
    if set(spec.hist_exog) & set(spec.futr_exog) or {"unique_id", "ds", "y"} & set(spec.hist_exog + spec.futr_exog):
        _fail("futr_exog", "must not repeat a historical column or unique_id/ds/y", spec.futr_exog)
    if spec.scaler_type not in SCALERS:
        _fail("scaler_type", f"must be one of {list(SCALERS)}", spec.scaler_type)


HFT = NHITSSpec(
    name="hft",
    h=12,
    input_size=288,
    freq="5min",
    season_length=288,
    n_pool_kernel_size=(8, 4, 1),
    n_freq_downsample=(8, 4, 1),
    batch_size=256,
    learning_rate=1e-3,
    gradient_clip_val=1.0,
    max_steps=1500,
    val_check_steps=100,
    early_stop_patience_steps=5,
    val_size=288,
    n_windows=48,  # hourly origins over the last 2 days of 5-minute bars: enough windows for a DM test
)

DAILY = NHITSSpec(
    name="daily",
    h=30,
    input_size=365,
    freq="B",
    season_length=5,
    n_pool_kernel_size=(4, 2, 1),
    n_freq_downsample=(4, 2, 1),
    batch_size=64,
    learning_rate=5e-4,
    max_steps=1500,
    val_check_steps=100,
    early_stop_patience_steps=5,
    val_size=30,
    n_windows=48,  # weekly origins (step 5 bars) over the last year of daily bars: enough windows for a DM test
    step_size=5,
)

# The quick profile: same architecture and data windows, a small step budget,
# no early stopping (one validation pass at the end keeps val loss observable).
_QUICK_CHANGES: dict[str, dict[str, Any]] = {
    "hft": dict(max_steps=200, val_check_steps=200, early_stop_patience_steps=-1, val_size=12),
    "daily": dict(max_steps=200, val_check_steps=200, early_stop_patience_steps=-1, val_size=30),
}

_CLASS_SPEC: dict[str, NHITSSpec] = {"crypto": HFT, "equities": DAILY, "fx": DAILY}


def spec_for(asset_class: str, profile: Profile = "quick", **overrides: Any) -> NHITSSpec:
    """Return the spec for ``asset_class`` ('crypto' -> hft, 'equities'/'fx' -> daily).

    ``profile='quick'`` shrinks the training budget; ``overrides`` replace any
    field afterwards (e.g. ``loss='quantile'``, ``max_steps=5``).
    """
    if asset_class not in _CLASS_SPEC:
        raise ValueError(f"asset_class must be one of {list(ASSET_CLASSES)} (got {asset_class!r})")
    if profile not in ("quick", "full"):
        raise ValueError(f"profile must be 'quick' or 'full' (got {profile!r})")
    spec = _CLASS_SPEC[asset_class]
    if profile == "quick":
        spec = spec.replace(**_QUICK_CHANGES[spec.name])
    return spec.replace(**overrides) if overrides else spec
