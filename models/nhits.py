"""Build a configured neuralforecast NHITS from an :class:`~models.configs.NHITSSpec`.

torch / pytorch_lightning / neuralforecast are imported inside the functions so
that importing this module stays cheap.

Devices: ``accelerator='auto'`` picks CUDA when ``torch.cuda.is_available()``
(precision ``'bf16-mixed'`` where the GPU supports bf16, else ``'16-mixed'``;
DDP strategy when more than one GPU is visible) and the CPU with ``'32-true'``
otherwise. Same code path either way: only the Lightning trainer kwargs change.

Scaling: ``spec.scaler_type`` (``'robust'`` by default: median / MAD) is
neuralforecast's *temporal* scaler. It is fitted per training window on that
window's input part only (the h output steps are masked out of the statistics),
applied to input and target, and inverted on the forecast. So no statistic of
the forecast horizon leaks into the input, and series of very different price
levels share one network. No global (``local_scaler_type``) scaler is used.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from models.configs import LOSSES, NHITSSpec

LogFn = Callable[[int, float], Any]
INTERVAL_LEVEL = 80
QUANTILES = (0.1, 0.5, 0.9)
_NOISY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
_NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # pytorch_lightning 2.6 on torch 2.14
    r".*does not have many workers.*",
    r".*val_check_steps is greater than max_steps.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Attribute 'callbacks' removed from hparams because it cannot be pickled.*",
)


def make_loss(name: str, *, season_length: int = 1) -> Any:
    """neuralforecast loss for ``name``.

    ``mse``, ``mae``, ``mase`` (scaled by the window's seasonal naive error,
    ``seasonality=season_length``) are point losses. ``quantile`` is
    ``MQLoss(quantiles=[0.1, 0.5, 0.9])`` and ``studentt`` is
    ``DistributionLoss('StudentT', level=[80])``; both yield an 80% interval.
    """
    from neuralforecast.losses import pytorch as nfl

    if name == "mse":
        return nfl.MSE()
    if name == "mae":
        return nfl.MAE()
    if name == "mase":
        return nfl.MASE(seasonality=season_length)
    if name == "quantile":
        return nfl.MQLoss(quantiles=list(QUANTILES))
    if name == "studentt":
        return nfl.DistributionLoss("StudentT", level=[INTERVAL_LEVEL])
    raise ValueError(f"unknown loss {name!r}; expected one of {list(LOSSES)}")


def trainer_settings(accelerator: str = "auto") -> dict[str, Any]:
    """Lightning ``accelerator/devices/precision/strategy`` for ``'auto'``, ``'cpu'`` or ``'gpu'``.

    With several GPUs the strategy is ``'ddp'``. Lightning's ddp launcher
    re-executes the current command (``sys.argv``) once per extra GPU, so run
    multi-GPU training from a dedicated script/subprocess, not in-process in a
    long-lived server; with one GPU or on CPU nothing is launched.
    """
    import torch

    if accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(f"accelerator must be 'auto', 'cpu' or 'gpu' (got {accelerator!r})")
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not use_gpu:
        return {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
    if not torch.cuda.is_available():
        raise ValueError(f"accelerator={accelerator!r} requested but torch.cuda.is_available() is False")
    n_gpus = torch.cuda.device_count()
    settings: dict[str, Any] = {
        "accelerator": "gpu",
        "devices": n_gpus,
        "precision": "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed",
    }
    if n_gpus > 1:
        settings["strategy"] = "ddp"
    return settings


def quiet_lightning() -> None:
    """Drop Lightning's INFO chatter ("GPU available", "Seed set", "`Trainer.fit` stopped")."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def lightning_quiet() -> Iterator[None]:
    """Context for fit/predict: quiet loggers and ignore known-harmless warnings."""
    quiet_lightning()
    with warnings.catch_warnings():
        for pattern in _NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def step_logger(log_fn: LogFn, every_n_steps: int) -> Any:
    """Lightning callback calling ``log_fn(step, train_loss)`` every ``every_n_steps`` steps."""
    import pytorch_lightning as pl

    class _StepLossLogger(pl.Callback):
        def __init__(self) -> None:
            self.log_fn, self.every = log_fn, max(1, int(every_n_steps))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            step = int(trainer.global_step)
            if step % self.every and step != trainer.max_steps:
                return
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if loss is not None:
                self.log_fn(step, float(loss.detach().float().cpu()))

        def __deepcopy__(self, memo: dict) -> _StepLossLogger:
            # neuralforecast deep-copies hparams (which include callbacks) when
            # saving; log_fn may be a bound method of an un-copyable logger.
            clone = copy.copy(self)
            memo[id(self)] = clone
            return clone

    return _StepLossLogger()


def build_nhits(
    spec: NHITSSpec,
    *,
    accelerator: str = "auto",
    log_every_n_steps: int = 50,
    log_fn: LogFn | None = None,
    alias: str = "NHITS",
) -> Any:
    """A configured (unfitted) neuralforecast ``NHITS`` for ``spec``."""
    from neuralforecast.models import NHITS

    quiet_lightning()
    callbacks = [step_logger(log_fn, log_every_n_steps)] if log_fn is not None else []
    trainer_kwargs: dict[str, Any] = {
        **trainer_settings(accelerator),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "log_every_n_steps": log_every_n_steps,
        "num_sanity_val_steps": 0,
    }
    if spec.gradient_clip_val is not None:
        trainer_kwargs["gradient_clip_val"] = spec.gradient_clip_val
    if callbacks:
        trainer_kwargs["callbacks"] = callbacks
    with lightning_quiet():
        return NHITS(
            h=spec.h,
            input_size=spec.input_size,
            n_pool_kernel_size=list(spec.n_pool_kernel_size),
            n_freq_downsample=list(spec.n_freq_downsample),
            n_blocks=list(spec.n_blocks),
            stack_types=["identity"] * len(spec.n_blocks),
            mlp_units=[list(u) for u in spec.mlp_units],
            dropout_prob_theta=spec.dropout_prob_theta,
            loss=make_loss(spec.loss, season_length=spec.season_length),
            learning_rate=spec.learning_rate,
            max_steps=spec.max_steps,
            val_check_steps=min(spec.val_check_steps, spec.max_steps),
            early_stop_patience_steps=spec.early_stop_patience_steps,
            windows_batch_size=spec.batch_size,
            batch_size=spec.series_batch_size,
            scaler_type=spec.scaler_type,
            random_seed=spec.seed,
            hist_exog_list=list(spec.hist_exog) or None,
            futr_exog_list=list(spec.futr_exog) or None,
            alias=alias,
            **trainer_kwargs,
        )
