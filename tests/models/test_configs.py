"""models.configs: the report's specs and clear validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from models.configs import NHITSSpec, spec_for


def test_report_configs() -> None:
    hft, daily = spec_for("crypto", "full"), spec_for("equities", "full")
    assert (hft.h, hft.input_size, hft.n_pool_kernel_size, hft.n_freq_downsample) == (12, 288, (8, 4, 1), (8, 4, 1))
    assert (hft.batch_size, hft.learning_rate, hft.gradient_clip_val, hft.freq) == (256, 1e-3, 1.0, "5min")
    assert ((daily.h, daily.input_size, daily.n_pool_kernel_size, daily.n_freq_downsample)
            == (30, 365, (4, 2, 1), (4, 2, 1)))
    assert (daily.batch_size, daily.learning_rate, daily.freq, daily.season_length) == (64, 5e-4, "B", 5)
    assert spec_for("fx", "full") == daily
    assert hft.max_steps >= 1000 and hft.early_stop_patience_steps > 0


def test_quick_profile_keeps_architecture_and_shrinks_budget() -> None:
    quick, full = spec_for("crypto", "quick"), spec_for("crypto", "full")
    assert quick.max_steps < full.max_steps
    assert (quick.h, quick.input_size, quick.n_pool_kernel_size) == (full.h, full.input_size, full.n_pool_kernel_size)
    assert spec_for("crypto", "quick", loss="quantile", max_steps=7).max_steps == 7


def test_spec_is_frozen_and_params_flat() -> None:
    spec = spec_for("equities")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.h = 3  # type: ignore[misc]
    params = spec.to_params()
    assert params["h"] == 30 and params["n_pool_kernel_size"] == "[4, 2, 1]"
    assert (spec.n_windows, spec.step) == (48, 5)  # weekly origins over the last year: enough for a DM test
    assert spec.test_size == spec.h + spec.step * (spec.n_windows - 1) == 265
    assert spec.min_length > spec.input_size + spec.test_size
    assert (spec_for("crypto").n_windows, spec_for("crypto").step) == (48, 12)
    assert spec_for("crypto").min_length <= 4 * 288  # four days of 5-minute bars train and evaluate


@pytest.mark.parametrize("changes, field", [
    ({"h": 0}, "NHITSSpec.h must be a positive integer"),
    ({"input_size": -1}, "NHITSSpec.input_size"),
    ({"n_freq_downsample": (4, 2)}, r"NHITSSpec.n_freq_downsample must have one entry per stack"),
    ({"mlp_units": ((8, 8),)}, "NHITSSpec.mlp_units"),
    ({"loss": "huber"}, r"NHITSSpec.loss must be one of \['mse', 'mae', 'mase', 'quantile', 'studentt'\]"),
    ({"scaler_type": "zscore"}, "NHITSSpec.scaler_type"),
    ({"learning_rate": 0.0}, "NHITSSpec.learning_rate"),
    ({"gradient_clip_val": -1.0}, "NHITSSpec.gradient_clip_val"),
    ({"early_stop_patience_steps": 3, "val_size": 0}, "NHITSSpec.val_size must be > 0"),
    ({"n_pool_kernel_size": (2, 0, 1)}, "NHITSSpec.n_pool_kernel_size must contain positive"),
])
def test_validation_errors_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        spec_for("equities", "quick", **changes)


def test_unknown_class_and_profile() -> None:
    with pytest.raises(ValueError, match="asset_class"):
        spec_for("bonds")
    with pytest.raises(ValueError, match="profile"):
        spec_for("fx", "medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'x'"):
        NHITSSpec(name="t", h="x", input_size=2, freq="B", season_length=5)  # type: ignore[arg-type]
