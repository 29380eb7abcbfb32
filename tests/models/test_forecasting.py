"""models.forecasting: future forecasts and a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.configs import spec_for
from models.evaluation import fit_nhits
from models.forecasting import FORECAST_COLUMNS, forecast, load_model, save_model
from models.frames import to_training_frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(equities_daily: pd.DataFrame):
    frame = to_training_frame(equities_daily, "equities", "volatility", max_series=3)
    spec = spec_for("equities", "quick", max_steps=3, val_check_steps=3, loss="studentt",
                    mlp_units=((32, 32),) * 3)
    calls: list[int] = []
    nf = fit_nhits(frame, spec, "B", accelerator="cpu", log_fn=lambda s, v: calls.append(s), log_every_n_steps=1)
    assert calls == [1, 2, 3]
    return frame, spec, nf


def test_forecast_after_each_series_end(fitted) -> None:
    frame, spec, nf = fitted
    fc = forecast(nf, frame)
    assert list(fc.columns) == FORECAST_COLUMNS
    assert fc.groupby("unique_id")["step"].apply(list).tolist() == [list(range(1, spec.h + 1))] * 3
    last = frame.groupby("unique_id")["ds"].max()
    first = fc[fc.step == 1].set_index("unique_id")["ds"]
    assert ((first - last).dt.days.between(1, 3)).all()  # next business day
    assert (fc["ds"].dt.dayofweek < 5).all()
    assert np.isfinite(fc[["yhat", "lo", "hi"]].to_numpy()).all()


def test_save_load_gives_identical_forecasts(fitted, tmp_path: Path) -> None:
    frame, _, nf = fitted
    before = forecast(nf, frame)
    path = save_model(nf, tmp_path / "nhits")
    files = sorted(p.name for p in Path(path).iterdir())
    assert "configuration.json" in files and any(f.endswith(".safetensors") for f in files)
    assert not any(f.endswith((".pkl", ".ckpt")) for f in files)  # no pickle on disk
    loaded = load_model(path, accelerator="cpu")
    after = forecast(loaded, frame)
    pd.testing.assert_frame_equal(before[["unique_id", "ds", "step", "yhat"]],
                                  after[["unique_id", "ds", "step", "yhat"]])
    # StudentT intervals are sampled: same seed -> same draws
    np.testing.assert_allclose(before[["lo", "hi"]].to_numpy(), after[["lo", "hi"]].to_numpy(), rtol=1e-6)
