"""The compared models: neuralforecast's NHITS, PatchTST, iTransformer, TimesNet and TiDE, built from one
:class:`~models.benchmark.specs.BenchSpec` and one :class:`~models.benchmark.specs.Budget`.

Architectures are the library defaults except where the issue names a setting (PatchTST patch_len 16 /
stride 8, TimesNet top_k 5) and NHITS, which uses the data set's pooling / downsampling (the report's hft and
daily configs, 3 stacks). Everything that is about the *budget* (steps, windows per step, learning rate,
seed, loss, scaler, Lightning trainer) is identical for all models.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.vocabulary import BENCHMARK_MODELS as MODELS
from models.benchmark.specs import BenchSpec, Budget

ALIASES = {"nhits": "NHITS", "patchtst": "PatchTST", "itransformer": "iTransformer", "timesnet": "TimesNet",
           "tide": "TiDE"}
MULTIVARIATE = frozenset({"itransformer"})  # one sample = all series of the data set at once


def parse_models(text: str | None) -> tuple[str, ...]:
    """``'nhits,tide'`` -> ``('nhits', 'tide')``; unknown names raise a ValueError listing the known ones."""
    if not text:
        return MODELS
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown or text!r}; choose from {', '.join(MODELS)}")
    return names


def build_model(name: str, spec: BenchSpec, budget: Budget, *, n_series: int, accelerator: str = "auto",
                callbacks: list | None = None, nhits_config: dict | None = None) -> Any:
    """An unfitted neuralforecast model ``name`` for ``spec`` trained under ``budget`` (``nhits_config``: a searched
    NHITS config)."""
    from neuralforecast import models as nfm

    from models.nhits import lightning_quiet, make_loss, trainer_settings

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    trainer: dict[str, Any] = {
        **trainer_settings(accelerator), "enable_progress_bar": False, "enable_model_summary": False,
        "enable_checkpointing": False, "logger": False, "num_sanity_val_steps": 0,
        "callbacks": list(callbacks or []),
        **({} if budget.train_cap_s is None else {"max_time": timedelta(seconds=budget.train_cap_s)}),
    }
    common: dict[str, Any] = dict(
        h=spec.h, input_size=spec.input_size, loss=make_loss("mae"), max_steps=budget.max_steps,
        learning_rate=budget.learning_rate, val_check_steps=budget.max_steps, early_stop_patience_steps=-1,
        scaler_type=spec.scaler_type, random_seed=budget.seed, alias=ALIASES[name],
    )
    if name in MULTIVARIATE:  # one sample = a window of every series: the budget's windows per step in samples
        common.update(n_series=n_series, batch_size=n_series,
                      windows_batch_size=samples_for(name, budget.batch_size, n_series))
    else:
        common.update(windows_batch_size=budget.batch_size, batch_size=min(32, n_series))
    with lightning_quiet():
        if name == "nhits":
            return _nhits(spec, budget, trainer, common["batch_size"], accelerator, nhits_config)
        if name == "patchtst":
            return nfm.PatchTST(patch_len=16, stride=8, **common, **trainer)
        if name == "itransformer":
            return nfm.iTransformer(**common, **trainer)
        if name == "timesnet":
            return nfm.TimesNet(top_k=5, **common, **trainer)
        return nfm.TiDE(**common, **trainer)


def _nhits(spec: BenchSpec, budget: Budget, trainer: dict, series_batch_size: int, accelerator: str,
           config: dict | None) -> Any:
    """NHITS through the project's own factory (the same one production training uses); ``config``: a searched
    config (models.benchmark.search) applied to the budget's spec."""
    from models.benchmark.search import nhits_spec
    from models.nhits import build_nhits

    nspec = nhits_spec(spec, budget, series_batch_size=series_batch_size, config=config)
    model = build_nhits(nspec, accelerator=accelerator)
    model.trainer_kwargs.update(callbacks=trainer["callbacks"])
    if "max_time" in trainer:
        model.trainer_kwargs["max_time"] = trainer["max_time"]
    return model


def samples_for(name: str, windows: int, n_series: int) -> int:
    """Samples of model ``name`` that hold ``windows`` series windows (training windows per step, or a latency
    batch): a multivariate model's sample holds a window of each of the ``n_series`` series (at least one
    sample), a univariate one's a single window."""
    return max(1, windows // n_series) if name in MULTIVARIATE else windows


def windows_per_sample(name: str, n_series: int) -> int:
    """Series windows in one sample (forward call row) of model ``name``."""
    return n_series if name in MULTIVARIATE else 1


def count_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))
