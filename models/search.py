"""Hyperparameter search for NHITS on Ray Tune (ASHA early stopping, Optuna TPE suggestions).

Plain code: ray, torch and neuralforecast are imported inside the functions. The caller owns the Ray cluster
(``ray.init`` on a local head or an address) and passes only the *training part* of a split
(`models.evaluation.time_split` -> ``Split.train``): the test windows of the gate never reach a trial.

``val_loss`` (what trials are ranked on): after each validation check (every ``val_check_steps`` training steps)
the mean absolute error, on the ORIGINAL scale of ``y``, of the model's h-step forecasts for the validation part,
i.e. the last ``val_size`` timesteps of every series of ``train`` (windows of ``h`` steps, one per start, all
inside that part; their inputs reach back before it). It is neuralforecast's own validation loss with
``valid_loss=MAE()``: ``BaseModel.validation_step`` keeps an unscaled copy of the targets and
``_compute_valid_loss`` inverse-scales the forecast (for a distribution loss it takes the distribution's mean on
the original scale) before the loss, so trials with robust, standard or identity scalers, or different training
losses, are comparable. A diverged trial reports ``inf`` (neuralforecast's guard), so it never wins.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.configs import NHITSSpec

METRIC = "val_loss"
_BOUNDS = ("data_end", "val_start", "val_end")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the actor name in its error texts
_TUPLE_KEYS = ("n_pool_kernel_size", "n_freq_downsample")
_SCALAR_KEYS = ("input_size", "learning_rate", "scaler_type", "dropout_prob_theta", "batch_size")


@dataclass(frozen=True)
class SearchResult:
    """What :func:`run_search` returns.

    ``trials``: one row per trial: ``trial_id, status`` (TERMINATED / ERROR), ``stopped_early`` (ASHA stopped it
    before ``max_steps``; one cut by ``time_budget_s`` is TERMINATED with a smaller ``last_step``), ``config``
    (JSON text) and one column per config key, ``val_loss`` (the best it reported), ``last_step, n_reports,
    seconds, error`` (text or None), and what the trial's own data was: ``data_end`` (its last ``ds``),
    ``val_start, val_end`` (first and last validation timestamp).
    ``history``: ``trial_id, step, val_loss``, one row per report. ``space``: JSON-serialisable description.
    """

    best_config: dict
    best_val_loss: float
    best_trial_id: str
    trials: pd.DataFrame
    history: pd.DataFrame
    wall_seconds: float
    space: dict


def _stacks(n: int, base: int) -> str:
    """``base, base/2, ..., 1`` over ``n`` stacks as text (Optuna's categorical choices must be scalars)."""
    return ",".join(str(max(1, base // 2**i)) if i < n - 1 else "1" for i in range(n))


def _text(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def search_space(spec: NHITSSpec) -> dict:
    """Ray Tune ``param_space`` around ``spec`` (the report's config of an asset class).

    ``input_size``: half, the spec's own and double (multiples of ``h``, at least ``2h``); ``n_pool_kernel_size``
    and ``n_freq_downsample``: halving tuples (``"8,4,1"``, text) with the spec's among them; ``mlp_width``:
    128/256/512 (two layers in every stack); ``learning_rate``: log-uniform over ``[1e-4, 3e-3]`` widened to
    hold 1/3..3x the spec's; ``scaler_type``: robust/standard/identity; ``dropout_prob_theta``: 0/0.1/0.2.
    """
    from ray import tune

    h, n = spec.h, len(spec.n_pool_kernel_size)
    m = max(2, round(spec.input_size / h))
    sizes = sorted({max(2 * h, v) for v in ((m // 2) * h, spec.input_size, 2 * m * h)})
    pools = sorted({_text(spec.n_pool_kernel_size), *(_stacks(n, b) for b in (2, 4, 8))})
    freqs = sorted({_text(spec.n_freq_downsample), *(_stacks(n, b) for b in (4, 8, 16))})
    return {
        "input_size": tune.choice(sizes),
        "n_pool_kernel_size": tune.choice(pools),
        "n_freq_downsample": tune.choice(freqs),
        "mlp_width": tune.choice([128, 256, 512]),
        "learning_rate": tune.loguniform(min(1e-4, spec.learning_rate / 3), max(3e-3, spec.learning_rate * 3)),
        "scaler_type": tune.choice(["robust", "standard", "identity"]),
        "dropout_prob_theta": tune.choice([0.0, 0.1, 0.2]),
    }


def describe_space(space: dict) -> dict:
    """JSON-serialisable description of a param_space (``{"choice": [...]}`` or ``{sampler, lower, upper}``)."""
    from ray.tune.search.sample import Categorical, Domain

    out: dict[str, Any] = {}
    for key, domain in space.items():
        if isinstance(domain, Categorical):
            out[key] = {"choice": list(domain.categories)}
        elif isinstance(domain, Domain):
            sampler = type(domain.get_sampler()).__name__.lower().lstrip("_")
            out[key] = {"sampler": sampler, "lower": domain.lower, "upper": domain.upper}
        else:
            out[key] = {"value": domain}
    return out


def apply(spec: NHITSSpec, config: dict) -> NHITSSpec:
    """``spec`` with a trial's ``config`` applied (tuple keys given as ``"8,4,1"`` text or sequences,
    ``mlp_width`` -> two layers of that width in every stack); an unknown key is a ValueError."""
    changes: dict[str, Any] = {}
    for key, value in config.items():
        if key in _TUPLE_KEYS:
            parts = value.split(",") if isinstance(value, str) else value
            changes[key] = tuple(int(v) for v in parts)
        elif key == "mlp_width":
            changes["mlp_units"] = tuple((int(value), int(value)) for _ in spec.mlp_units)
        elif key in _SCALAR_KEYS:
            changes[key] = type(getattr(spec, key))(value)
        else:
            raise ValueError(f"unknown search key {key!r}; expected {[*_TUPLE_KEYS, 'mlp_width', *_SCALAR_KEYS]}")
    return spec.replace(**changes)


def validation_bounds(train: pd.DataFrame, val_size: int) -> dict[str, str]:
    """``data_end, val_start, val_end`` (ISO text) of ``train``: its last ``ds`` and the first / last timestamp
    of the validation part (the last ``val_size`` rows of each series)."""
    ordered = train.sort_values(["unique_id", "ds"])
    tail = ordered.groupby("unique_id", sort=False).tail(val_size)
    return {"data_end": pd.Timestamp(ordered["ds"].max()).isoformat(),
            "val_start": pd.Timestamp(tail["ds"].min()).isoformat(),
            "val_end": pd.Timestamp(tail["ds"].max()).isoformat()}


def _trial(config: dict, *, train: pd.DataFrame, spec: NHITSSpec, freq: str, settings: dict) -> None:
    """Function trainable: fit NHITS with ``config`` and report ``val_loss`` after every validation check."""
    trial_spec = apply(spec, config).replace(max_steps=settings["max_steps"], val_size=settings["val_size"],
                                             val_check_steps=settings["val_check_steps"], early_stop_patience_steps=-1)
    bounds = validation_bounds(train, trial_spec.val_size)  # an invalid config fails here, before the heavy imports
    import pytorch_lightning as pl
    import torch
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MAE
    from ray import tune

    from models.nf_frames import model_columns
    from models.nhits import build_nhits, lightning_quiet

    torch.set_num_threads(settings["threads"])

    class _Report(pl.Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking or not pl_module.valid_trajectories:
                return
            step, loss = pl_module.valid_trajectories[-1]
            tune.report({METRIC: float(loss), "step": int(step), **bounds})

    model = build_nhits(trial_spec, accelerator=settings["accelerator"])
    model.valid_loss = MAE()  # original-scale MAE whatever the training loss (see the module docstring)
    model.trainer_kwargs["callbacks"] = [*(model.trainer_kwargs.get("callbacks") or []), _Report()]
    nf = NeuralForecast(models=[model], freq=freq)
    with lightning_quiet():
        nf.fit(df=model_columns(train, trial_spec.exog), val_size=trial_spec.val_size)


def _recorder() -> Any:
    """A Tune callback (driver side, writes nothing) keeping every trial, its reports and its timings."""
    from ray import tune

    class _Recorder(tune.Callback):
        def __init__(self) -> None:
            self.trials: dict[str, Any] = {}
            self.started: dict[str, float] = {}
            self.ended: dict[str, float] = {}
            self.reports: list[dict] = []

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.trials[trial.trial_id] = trial
            self.started.setdefault(trial.trial_id, time.perf_counter())

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if METRIC in result:
                self.reports.append({"trial_id": trial.trial_id, "step": int(result["step"]),
                                     METRIC: float(result[METRIC]), **{k: result[k] for k in _BOUNDS}})

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.on_trial_start(iteration, trials, trial)  # registers a trial that failed before it started
            self.ended[trial.trial_id] = time.perf_counter()

        on_trial_error = on_trial_complete

    return _Recorder()


def _asha(max_t: int, grace_period: int) -> Any:
    """ASHA on ``step`` (halving, reduction factor 2) that records the trials it stops before ``max_t``."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class _Asha(ASHAScheduler):
        def __init__(self) -> None:
            super().__init__(time_attr="step", max_t=max_t, grace_period=grace_period, reduction_factor=2)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP and result.get("step", max_t) < max_t:
                self.stopped.add(trial.trial_id)
            return action

    return _Asha()


def run_search(train: pd.DataFrame, spec: NHITSSpec, freq: str, *, num_samples: int, max_steps: int, val_size: int,
               grace_steps: int, val_check_steps: int, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
               max_concurrent: int | None, time_budget_s: float | None, storage_path: Path, seed: int, name: str,
               space: dict | None = None) -> SearchResult:
    """Search ``space`` (default :func:`search_space` of ``spec``) with ``num_samples`` Ray Tune trials on the
    caller's Ray cluster (ValueError when ``ray.is_initialized()`` is False).

    Each trial fits NHITS (``apply(spec, config)``, ``max_steps``, no early stopping) on ``train``, holding out
    its last ``val_size`` steps (>= ``spec.h``) for ``val_loss`` (module docstring), reported every
    ``val_check_steps``; ASHA (grace ``grace_steps``, halving) stops the poor ones, Optuna's TPE (``seed``)
    suggests configs, at most ``max_concurrent`` at a time (None: as many as the resources allow), until
    ``num_samples`` or ``time_budget_s``. Trials reuse their Ray actors (the imports are paid once per actor).

    A failed trial (error, killed worker) ends ERROR and the search goes on. Best = lowest ``val_loss`` among
    trials that reported and did not fail (a failed trial's config may be why it failed, e.g. out of memory;
    its reports stay in ``history``); RuntimeError, with the trials' errors, when there is none. Ray Tune keeps
    its own experiment state under ``storage_path / name`` (shared storage for a multi-node cluster).
    """
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if val_size < spec.h:
        raise ValueError(f"val_size {val_size} must be >= h {spec.h} (one validation window at least)")
    if not 0 < grace_steps <= max_steps or not 0 < val_check_steps <= max_steps:
        raise ValueError(f"need 0 < grace_steps, val_check_steps <= max_steps (got {grace_steps}, "
                         f"{val_check_steps}, {max_steps})")
    if not ray.is_initialized():
        raise ValueError("ray is not initialised: the caller owns the cluster (ray.init(...) on a local head "
                         "or ray.init(address=...)) before run_search")
    space = search_space(spec) if space is None else space
    settings = {"max_steps": max_steps, "val_size": val_size, "val_check_steps": val_check_steps,
                "accelerator": "gpu" if gpus_per_trial > 0 else "cpu", "threads": max(1, int(cpus_per_trial))}
    trainable = tune.with_resources(tune.with_parameters(_trial, train=train, spec=spec, freq=freq,
                                                         settings=settings),
                                    {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    searcher: Any = OptunaSearch(seed=seed)
    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    scheduler, recorder = _asha(max_steps, grace_steps), _recorder()
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", search_alg=searcher, scheduler=scheduler,
                                    num_samples=num_samples, time_budget_s=time_budget_s, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage_path), name=name, verbose=0, callbacks=[recorder],
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)))
    start = time.perf_counter()
    tuner.fit()
    wall = time.perf_counter() - start
    trials, history = _tables(recorder, scheduler.stopped, list(space))
    ok = trials[(trials["n_reports"] > 0) & (trials["status"] != "ERROR")]
    if ok.empty:
        raise RuntimeError(f"no trial of search {name!r} reported a val_loss and ended without error; errors: "
                           + "; ".join(f"{t}: {e}" for t, e in zip(trials["trial_id"], trials["error"], strict=True)))
    best = ok.loc[ok["val_loss"].fillna(math.inf).idxmin()]
    return SearchResult(best_config=json.loads(best["config"]), best_val_loss=float(best["val_loss"]),
                        best_trial_id=str(best["trial_id"]), trials=trials, history=history,
                        wall_seconds=wall, space=describe_space(space))


def _tables(recorder: Any, stopped: set[str], keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials, history)`` frames of :class:`SearchResult` from the recorder's trials and reports."""
    reports = pd.DataFrame(recorder.reports, columns=["trial_id", "step", METRIC, *_BOUNDS])
    rows = []
    for trial_id, trial in recorder.trials.items():
        mine = reports[reports["trial_id"] == trial_id]
        status = str(trial.status)
        error = trial.get_error() if status == "ERROR" else None
        rows.append({
            "trial_id": trial_id, "status": status, "stopped_early": trial_id in stopped,
            "config": json.dumps(trial.config, sort_keys=True), **{k: trial.config.get(k) for k in keys},
            METRIC: float(mine[METRIC].min()) if len(mine) else math.nan,
            "last_step": int(mine["step"].iloc[-1]) if len(mine) else 0, "n_reports": len(mine),
            "seconds": recorder.ended.get(trial_id, time.perf_counter()) - recorder.started[trial_id],
            "error": (_ANSI.sub("", str(error))[-4000:] if error else "no error text") if status == "ERROR" else None,
            **{k: pd.Timestamp(mine[k].iloc[-1]) if len(mine) else pd.NaT for k in _BOUNDS},
        })
    return pd.DataFrame(rows), reports[["trial_id", "step", METRIC]].reset_index(drop=True)
