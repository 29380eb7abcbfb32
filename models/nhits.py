"""Build a configured neuralforecast NHITS from an :class:`~models.configs.NHITSSpec`.

torch / pytorch_lightning / neuralforecast are imported inside the functions so
that importing this module stays cheap.

Devices: ``accelerator='auto'`` picks CUDA when ``torch.cuda.is_available()``
(precision ``'bf16-mixed'`` where the GPU supports bf16, else ``'16-mixed'``;
DDP strategy when more than one GPU is visible) and the CPU with ``'32-true'``
otherwise. Same code path either way: only the Lightning trainer kwargs change.
Several processes (DDP) are driven by :mod:`models.ddp` through the ``devices`` /
``strategy`` overrides of :func:`trainer_settings` and :func:`build_nhits`.

Best checkpoint: when ``spec.val_size > 0`` :func:`build_nhits` adds a callback
(:func:`best_checkpoint_callback`) that keeps an in-memory CPU copy of the weights
with the lowest ``ptl/val_loss`` and puts them back when training ends, so early
stopping (or a budget that overshoots) leaves the best validated weights, not the
last ones. :func:`best_checkpoint` reads its record from a fitted model.

Scaling: ``spec.scaler_type`` (``'robust'`` by default: median / MAD) is
neuralforecast's *temporal* scaler. It is fitted per training window on that
window's input part only (the h output steps are masked out of the statistics),
applied to input and target, and inverted on the forecast. So no statistic of
the forecast horizon leaks into the input, and series of very different price
levels share one network. No global (``local_scaler_type``) scaler is used.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
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
    r".*Attribute 'strategy' removed from hparams.*",  # models.ddp: the strategy is not saved
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


def trainer_settings(accelerator: str = "auto", *, devices: int | None = None,
                     strategy: Any = None) -> dict[str, Any]:
    """Lightning ``accelerator/devices/precision/strategy`` for ``'auto'``, ``'cpu'`` or ``'gpu'``.

    Defaults: CPU runs 1 process; with several GPUs all of them are used with
    strategy ``'ddp'``. ``devices`` overrides the process count (CPU processes or
    GPUs; more GPUs than visible is a ``ValueError``) and ``strategy`` the
    strategy (default ``'ddp'`` when ``devices > 1``). Lightning's ddp launcher
    re-executes the current command (``sys.argv``) once per extra process, so run
    several devices from a dedicated subprocess (:mod:`models.ddp`), not
    in-process in a long-lived server; with one device nothing is launched.
    """
    import torch

    if accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(f"accelerator must be 'auto', 'cpu' or 'gpu' (got {accelerator!r})")
    if devices is not None and (not isinstance(devices, int) or isinstance(devices, bool) or devices < 1):
        raise ValueError(f"devices must be a positive integer or None (got {devices!r})")
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not use_gpu:
        settings: dict[str, Any] = {"accelerator": "cpu", "devices": devices or 1, "precision": "32-true"}
    else:
        if not torch.cuda.is_available():
            raise ValueError(f"accelerator={accelerator!r} requested but torch.cuda.is_available() is False")
        n_gpus = torch.cuda.device_count()
        if devices is not None and devices > n_gpus:
            raise ValueError(f"devices={devices} but only {n_gpus} GPU(s) are visible")
        settings = {
            "accelerator": "gpu",
            "devices": devices or n_gpus,
            "precision": "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed",
        }
    if strategy is not None:
        settings["strategy"] = strategy
    elif settings["devices"] > 1:
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


BEST_MONITOR = "ptl/val_loss"  # neuralforecast logs it in on_validation_epoch_end (window-weighted, all ranks)


@functools.cache
def _best_checkpoint_class() -> type:
    import pytorch_lightning as pl

    class BestCheckpoint(pl.Callback):
        """Keep the weights with the lowest validation loss in memory; restore them at ``on_train_end``.

        ``on_validation_end`` runs after the module's ``on_validation_epoch_end``
        has logged ``ptl/val_loss`` (the count-weighted mean over all validation
        windows, gathered across DDP ranks, so every rank picks the same step).
        A strictly lower, finite loss replaces the copy: ``state_dict`` tensors
        detached and cloned to the CPU, never written to a file. After fit:
        ``best_step`` / ``best_val_loss`` (the restored weights), ``last_step`` /
        ``last_val_loss`` (the last validation), ``restored``.
        """

        def __init__(self) -> None:
            self._reset()

        def _reset(self) -> None:
            # Reassigned, never mutated: a shallow clone (see __deepcopy__) keeps its own record.
            self.best_val_loss: float | None = None
            self.best_step: int | None = None
            self.last_val_loss: float | None = None
            self.last_step: int | None = None
            self.best_state: dict[str, Any] | None = None
            self.restored = False
            self._seen = 0

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self._reset()
            self._seen = len(getattr(pl_module, "valid_trajectories", []))

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            seen = len(getattr(pl_module, "valid_trajectories", []))
            value = trainer.callback_metrics.get(BEST_MONITOR)
            if trainer.sanity_checking or value is None or seen == self._seen:
                return  # no new validation loss was logged
            self._seen = seen
            loss, step = float(value), int(trainer.global_step)
            self.last_val_loss, self.last_step = loss, step
            if math.isfinite(loss) and (self.best_val_loss is None or loss < self.best_val_loss):
                self.best_val_loss, self.best_step = loss, step
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.best_state is not None:
                pl_module.load_state_dict(self.best_state)
                self.restored = True

        def summary(self) -> dict[str, Any] | None:
            if self.best_step is None:
                return None
            return {"best_step": self.best_step, "best_val_loss": self.best_val_loss, "last_step": self.last_step,
                    "last_val_loss": self.last_val_loss, "restored": self.restored}

        def __deepcopy__(self, memo: dict) -> BestCheckpoint:
            # neuralforecast deep-copies models (NeuralForecast.__init__) and hparams
            # (serialize, which then drops the callbacks): share the record, copy nothing.
            clone = copy.copy(self)
            memo[id(self)] = clone
            return clone

    return BestCheckpoint


def best_checkpoint_callback() -> Any:
    """A fresh best-validation-weights callback (added by :func:`build_nhits` when ``spec.val_size > 0``)."""
    return _best_checkpoint_class()()


def best_checkpoint(model: Any) -> dict[str, Any] | None:
    """``{best_step, best_val_loss, last_step, last_val_loss, restored}`` of a fitted NHITS (or of the first
    model of a ``NeuralForecast``); ``None`` without the callback (``val_size == 0``, a loaded model) or when
    no finite validation loss was seen."""
    if hasattr(model, "models"):
        model = model.models[0]
    cls = _best_checkpoint_class()
    for cb in (getattr(model, "trainer_kwargs", {}) or {}).get("callbacks") or []:
        if isinstance(cb, cls):
            return cb.summary()
    return None


def build_nhits(
    spec: NHITSSpec,
    *,
    accelerator: str = "auto",
    log_every_n_steps: int = 50,
    log_fn: LogFn | None = None,
    alias: str = "NHITS",
    keep_best: bool = True,
    devices: int | None = None,
    strategy: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A configured (unfitted) neuralforecast ``NHITS`` for ``spec``.

    ``keep_best`` (with ``spec.val_size > 0``) adds the best-checkpoint callback;
    ``devices`` / ``strategy`` go to :func:`trainer_settings`; ``callbacks`` are
    extra Lightning callbacks.
    """
    from neuralforecast.models import NHITS

    quiet_lightning()
    callbacks = list(callbacks or [])
    if log_fn is not None:
        callbacks.append(step_logger(log_fn, log_every_n_steps))
    if keep_best and spec.val_size > 0:
        callbacks.append(best_checkpoint_callback())
    trainer_kwargs: dict[str, Any] = {
        **trainer_settings(accelerator, devices=devices, strategy=strategy),
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
