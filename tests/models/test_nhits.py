"""models.nhits: losses, device settings, step logging; every loss trains 2 steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.configs import spec_for
from models.frames import to_training_frame
from models.nhits import build_nhits, make_loss, trainer_settings

TINY = dict(h=5, input_size=40, max_steps=2, val_check_steps=2, val_size=5, batch_size=16,
            mlp_units=((16, 16),) * 3, n_windows=2)


@pytest.fixture(scope="module")
def equity_close(equities_daily: pd.DataFrame) -> pd.DataFrame:
    return to_training_frame(equities_daily, "equities", "close", min_length=100, max_series=3)


def test_make_loss_names() -> None:
    from neuralforecast.losses.pytorch import MAE, MASE, MSE, DistributionLoss, MQLoss

    assert isinstance(make_loss("mse"), MSE) and isinstance(make_loss("mae"), MAE)
    assert isinstance(make_loss("mase", season_length=5), MASE)
    q = make_loss("quantile")
    assert isinstance(q, MQLoss) and q.quantiles.tolist() == pytest.approx([0.1, 0.5, 0.9])
    assert isinstance(make_loss("studentt"), DistributionLoss)
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        make_loss("huber")


def test_trainer_settings_cpu_and_gpu_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trainer_settings("auto") == {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
    with pytest.raises(ValueError, match="cuda"):
        trainer_settings("gpu")
    with pytest.raises(ValueError, match="accelerator"):
        trainer_settings("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert trainer_settings("auto") == {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert trainer_settings("auto")["strategy"] == "ddp"
    assert trainer_settings("cpu")["accelerator"] == "cpu"


def test_build_nhits_applies_spec() -> None:
    spec = spec_for("crypto", "quick", max_steps=3, val_check_steps=3)
    model = build_nhits(spec, accelerator="cpu")
    assert (model.h, model.input_size, model.windows_batch_size, model.learning_rate) == (12, 288, 256, 1e-3)
    assert model.trainer_kwargs["gradient_clip_val"] == 1.0
    assert model.trainer_kwargs["enable_progress_bar"] is False and model.trainer_kwargs["logger"] is False
    assert model.trainer_kwargs["precision"] == "32-true"
    assert type(model.scaler).__name__ and model.hparams["scaler_type"] == "robust"


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "mae", "mase", "quantile", "studentt"])
def test_each_loss_trains_two_steps(loss: str, equity_close: pd.DataFrame) -> None:
    from models.evaluation import fit_nhits
    from models.forecasting import forecast

    logged: list[tuple[int, float]] = []
    spec = spec_for("equities", "quick", loss=loss, **TINY)
    nf = fit_nhits(equity_close, spec, "B", accelerator="cpu", log_fn=lambda s, v: logged.append((s, v)),
                   log_every_n_steps=1)
    assert [s for s, _ in logged] == [1, 2] and all(np.isfinite(v) for _, v in logged)
    fc = forecast(nf, equity_close)
    assert len(fc) == 3 * spec.h and np.isfinite(fc["yhat"]).all()
    if loss in ("quantile", "studentt"):
        assert np.isfinite(fc[["lo", "hi"]].to_numpy()).all()
        assert (fc["lo"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["hi"]).all()
        assert (fc["hi"] - fc["lo"] > 0).mean() > 0.9
    else:
        assert fc[["lo", "hi"]].isna().all().all()


@pytest.mark.slow
def test_full_profile_early_stopping_path_runs(equity_close: pd.DataFrame) -> None:
    from models.evaluation import fit_nhits

    spec = spec_for("equities", "full", **{**TINY, "max_steps": 6, "val_check_steps": 1},
                    early_stop_patience_steps=2)
    nf = fit_nhits(equity_close, spec, "B", accelerator="cpu")
    model = nf.models[0]
    assert 1 <= len(model.valid_trajectories) <= 6  # validated every step, may stop early
    assert all(np.isfinite(v) for _, v in model.valid_trajectories)
