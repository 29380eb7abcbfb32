"""models.nhits best checkpoint: with val_size the fitted weights are the lowest-validation-loss ones, not the last.

The validation loss of the fitted model is recomputed here independently of neuralforecast's validation loop:
with ``val_size == h`` there is exactly one validation window per series (input ending ``h`` steps before the
end, output the last ``h`` steps), and neuralforecast's ``ptl/val_loss`` for the MAE loss is the plain mean of
``|y - yhat|`` over those ``n_series * h`` points on the original scale. So ``predict`` on the frame without
its last ``h`` rows, scored by hand, must give the recorded best loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.configs import NHITSSpec
from models.nhits import best_checkpoint, build_nhits, lightning_quiet

H = 6
SPEC = NHITSSpec(name="tiny", h=H, input_size=24, freq="D", season_length=12, n_pool_kernel_size=(2, 1),
                 n_freq_downsample=(2, 1), n_blocks=(1, 1), mlp_units=((32, 32), (32, 32)), batch_size=32,
                 series_batch_size=4, learning_rate=0.01, max_steps=60, val_check_steps=5, val_size=H,
                 scaler_type="identity", loss="mae", seed=1, n_windows=1)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core box two threads oversubscribe and a 1 s fit takes 15 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(160)
    parts = [pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=len(t), freq="D"),
                           "y": 10 + i + np.sin(2 * np.pi * t / 12 + i) + 0.3 * rng.standard_normal(len(t))})
             for i in range(4)]
    return pd.concat(parts, ignore_index=True)


def _fit(frame: pd.DataFrame, spec: NHITSSpec, **kwargs):
    from neuralforecast import NeuralForecast

    nf = NeuralForecast(models=[build_nhits(spec, accelerator="cpu", **kwargs)], freq="D")
    with lightning_quiet():
        nf.fit(df=frame, val_size=spec.val_size)
    return nf


def _val_mae(nf, frame: pd.DataFrame) -> float:
    """MAE of the forecast from all but the last H rows of each series against those rows."""
    last = frame.groupby("unique_id").tail(H)
    with lightning_quiet():
        fc = nf.predict(df=frame.drop(index=last.index))
    scored = last.merge(fc, on=["unique_id", "ds"], how="inner")
    assert len(scored) == len(last) == 4 * H
    return float(np.mean(np.abs(scored["y"] - scored["NHITS"])))


@pytest.fixture(scope="module")
def fits(frame: pd.DataFrame):
    import torch

    torch.set_num_threads(1)
    return _fit(frame, SPEC), _fit(frame, SPEC, keep_best=False)


def test_fitted_weights_are_the_best_validated_not_the_last(fits, frame: pd.DataFrame) -> None:
    best_nf, _ = fits
    trajectory = best_nf.models[0].valid_trajectories
    assert [s for s, _ in trajectory] == list(range(5, 61, 5))
    best_step, best_loss = min(trajectory, key=lambda sv: sv[1])
    last_step, last_loss = trajectory[-1]
    # the setup must show the case: validation loss went down, then up again before the end
    assert best_step < last_step and last_loss > 1.1 * best_loss

    record = best_checkpoint(best_nf)
    assert record == {"best_step": best_step, "best_val_loss": pytest.approx(best_loss, rel=1e-6),
                      "last_step": 60, "last_val_loss": pytest.approx(last_loss, rel=1e-6), "restored": True}
    recomputed = _val_mae(best_nf, frame)
    assert recomputed == pytest.approx(best_loss, rel=1e-4)
    assert abs(recomputed - last_loss) > 0.05 * last_loss


def test_without_the_callback_the_last_weights_stay(fits, frame: pd.DataFrame) -> None:
    best_nf, last_nf = fits
    # the callback only observes: the training run itself is the same
    assert last_nf.models[0].valid_trajectories == best_nf.models[0].valid_trajectories
    assert best_checkpoint(last_nf) is None
    assert _val_mae(last_nf, frame) == pytest.approx(last_nf.models[0].valid_trajectories[-1][1], rel=1e-4)


def test_no_validation_adds_nothing(frame: pd.DataFrame) -> None:
    spec = SPEC.replace(val_size=0, max_steps=10, val_check_steps=10)
    model = build_nhits(spec, accelerator="cpu")
    assert "callbacks" not in model.trainer_kwargs  # nothing added: the trainer is built as before
    nf = _fit(frame, spec)
    assert best_checkpoint(nf) is None and nf.models[0].valid_trajectories == []


def test_saved_and_loaded_best_model_predicts_identically(fits, frame: pd.DataFrame, tmp_path) -> None:
    from models.forecasting import load_model, save_model

    best_nf, _ = fits
    path = save_model(best_nf, tmp_path / "model")
    assert {p.suffix for p in (tmp_path / "model").iterdir()} == {".json", ".safetensors"}  # nothing pickled
    loaded = load_model(path, accelerator="cpu")
    assert best_checkpoint(loaded) is None  # callbacks are not saved; the restored weights are
    with lightning_quiet():
        want, got = best_nf.predict(df=frame), loaded.predict(df=frame)
    np.testing.assert_allclose(got["NHITS"].to_numpy(), want["NHITS"].to_numpy(), rtol=0, atol=1e-6)
    assert _val_mae(loaded, frame) == pytest.approx(best_checkpoint(best_nf)["best_val_loss"], rel=1e-4)
