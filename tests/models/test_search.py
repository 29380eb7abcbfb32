"""models.search: the NHITS search space, and real Ray Tune searches on a local 2-CPU head (ASHA + Optuna)."""

from __future__ import annotations

import json
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from models.configs import NHITSSpec, spec_for
from models.evaluation import time_split
from models.search import apply, describe_space, run_search, search_space

H, VAL = 6, 12
SPEC = NHITSSpec(name="tiny", h=H, input_size=24, freq="h", season_length=24, n_pool_kernel_size=(4, 2, 1),
                 n_freq_downsample=(4, 2, 1), mlp_units=((64, 64),) * 3, batch_size=32, n_windows=4)


def _frame(n_series: int = 4, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=n, freq="h")
    t = np.arange(n)
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": ds,
                                    "y": 10 * (i + 1) + (i + 1) * np.sin(2 * np.pi * t / 24) + rng.normal(0, .1, n)})
                      for i in range(n_series)], ignore_index=True)


def test_space_around_the_report_config_and_apply():
    space = describe_space(search_space(spec_for("crypto")))  # hft: h=12, input 288, pooling (8, 4, 1)
    json.dumps(space)
    assert space["input_size"] == {"choice": [144, 288, 576]}
    assert "8,4,1" in space["n_pool_kernel_size"]["choice"] and "8,4,1" in space["n_freq_downsample"]["choice"]
    assert space["learning_rate"] == {"sampler": "loguniform", "lower": 1e-4, "upper": 3e-3}
    assert space["scaler_type"]["choice"] == ["robust", "standard", "identity"]
    daily = describe_space(search_space(spec_for("equities")))  # h=30, input 365: half/double in multiples of h
    assert daily["input_size"] == {"choice": [180, 365, 720]} and "4,2,1" in daily["n_pool_kernel_size"]["choice"]
    got = apply(SPEC, {"input_size": 12, "n_pool_kernel_size": "8,4,1", "mlp_width": 128, "scaler_type": "identity",
                       "learning_rate": 2e-3, "dropout_prob_theta": 0.1})
    assert (got.input_size, got.n_pool_kernel_size, got.mlp_units) == (12, (8, 4, 1), ((128, 128),) * 3)
    assert (got.scaler_type, got.learning_rate, got.dropout_prob_theta, got.h) == ("identity", 2e-3, 0.1, H)
    with pytest.raises(ValueError, match="unknown search key"):
        apply(SPEC, {"h": 3})


def test_arguments_checked_and_ray_must_be_initialised(tmp_path):
    import ray

    ray.shutdown()  # leave a connection an earlier test module may have left up (its cluster keeps running)
    kwargs = dict(num_samples=1, max_steps=10, grace_steps=5, val_check_steps=5, max_concurrent=None,
                  time_budget_s=None, storage_path=tmp_path, seed=0, name="x")
    with pytest.raises(ValueError, match="val_size 3 must be >= h 6"):
        run_search(_frame(), SPEC, "h", val_size=3, **kwargs)
    with pytest.raises(ValueError, match="ray is not initialised"):
        run_search(_frame(), SPEC, "h", val_size=VAL, **kwargs)


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.shutdown()  # as above; then address="local": a head of our own even when $RAY_ADDRESS names one or
    # another cluster runs on this machine (a bare ray.init would join it)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.mark.slow
def test_search_ranks_trials_on_validation_inside_the_training_part(cluster, tmp_path):
    split = time_split(_frame(), h=H, n_windows=SPEC.n_windows)
    space = search_space(SPEC)
    res = run_search(split.train, SPEC, "h", num_samples=4, max_steps=20, val_size=VAL, grace_steps=5,
                     val_check_steps=5, max_concurrent=2, time_budget_s=None, storage_path=tmp_path, seed=0,
                     name="tiny")
    trials, hist = res.trials, res.history
    assert len(trials) == 4 and trials["trial_id"].is_unique and set(trials["status"]) == {"TERMINATED"}
    assert trials["error"].isna().all() and res.wall_seconds > 0 and (trials["seconds"] > 0).all()
    best = trials.loc[trials["val_loss"].idxmin()]
    assert res.best_trial_id == best["trial_id"] and res.best_val_loss == best["val_loss"]
    assert res.best_config == json.loads(best["config"]) and json.loads(json.dumps(res.space)) == res.space
    # the trials' columns are their history: best report, last step, number of reports
    per = hist.groupby("trial_id")
    assert (trials.set_index("trial_id")["val_loss"] .sort_index() == per["val_loss"].min()).all()
    assert (trials.set_index("trial_id")["n_reports"].sort_index() == per.size()).all()
    assert set(hist["step"]) <= {5, 10, 15, 20} and (hist["val_loss"] > 0).all()
    for _, row in trials.iterrows():
        assert row["last_step"] == (row["n_reports"] * 5)
        assert row["stopped_early"] == (row["last_step"] < 20)  # ASHA's stops, nothing else ends a trial early
        config = json.loads(row["config"])
        assert set(config) == set(space)
        for key, domain in describe_space(space).items():
            if "choice" in domain:
                assert config[key] in domain["choice"] and row[key] == config[key]
            else:
                assert domain["lower"] <= config[key] <= domain["upper"]
        apply(SPEC, config)  # a valid spec
    # what each trial trained and validated on: the training part, validation = its last VAL hours
    assert (trials["data_end"] == split.train_end).all() and (trials["val_end"] == split.train_end).all()
    assert (trials["val_start"] == split.train_end - pd.Timedelta(hours=VAL - 1)).all()
    assert split.train_end == split.cutoffs[0] < split.test_start
    print(f"4-trial search: {res.wall_seconds:.1f} s")


def _kill_one_worker(done: threading.Event, killed: list) -> None:
    """SIGKILL one Ray function-trainable worker busy in a trial (``ray::ImplicitFunc.train``, a descendant of
    this process: the local head started by the fixture) once it has loaded torch, i.e. is about to train."""
    import psutil

    while not done.is_set():
        for proc in psutil.Process().children(recursive=True):
            try:
                busy = " ".join(proc.cmdline()).strip() == "ray::ImplicitFunc.train"
                if busy and any("libtorch" in m.path for m in proc.memory_maps()):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_trial_worker_ends_that_trial_only(cluster, tmp_path):
    split = time_split(_frame(), h=H, n_windows=SPEC.n_windows)
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_worker, args=(done, killed), daemon=True)
    killer.start()
    try:
        res = run_search(split.train, SPEC, "h", num_samples=4, max_steps=200, val_size=VAL, grace_steps=40,
                         val_check_steps=20, max_concurrent=2, time_budget_s=None, storage_path=tmp_path, seed=1,
                         name="kill")
    finally:
        done.set()
        killer.join(5)
    assert len(killed) == 1
    trials = res.trials
    assert len(trials) == 4
    failed = trials[trials["status"] == "ERROR"]
    assert len(failed) == 1 and failed["error"].iloc[0] and not failed["stopped_early"].iloc[0]
    assert "actor died unexpectedly" in failed["error"].iloc[0] and failed["last_step"].iloc[0] < 200  # mid-trial
    ok = trials[trials["status"] == "TERMINATED"]
    assert len(ok) == 3 and (ok["n_reports"] > 0).all()
    # the best is among the trials that ended well, even if the killed one had reported a lower loss
    assert res.best_trial_id in set(ok["trial_id"]) and res.best_val_loss == ok["val_loss"].min()


@pytest.mark.slow
def test_no_trial_reporting_is_a_runtime_error_with_the_trials_errors(cluster, tmp_path):
    from ray import tune

    split = time_split(_frame(), h=H, n_windows=SPEC.n_windows)
    with pytest.raises(RuntimeError, match=r"(?s)no trial of search 'broken' reported.*"
                                           r"NHITSSpec.input_size must be a positive integer \(got -1\)"):
        run_search(split.train, SPEC, "h", num_samples=2, max_steps=10, val_size=VAL, grace_steps=5,
                   val_check_steps=5, max_concurrent=None, time_budget_s=None, storage_path=tmp_path, seed=0,
                   name="broken", space={"input_size": tune.choice([-1])})  # every trial fails in apply()
