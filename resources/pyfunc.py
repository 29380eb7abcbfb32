"""MLflow pyfunc wrappers, so an NHITS version and a baseline champion load and predict the same way:
`mlflow.pyfunc.load_model("models:/nhits-crypto-close@champion").predict(history)` -> forecast frame.
Imported only by `resources.registry` when MLflow is in use (mlflow is heavy)."""

import json

import mlflow.pyfunc


class NHITSModel(mlflow.pyfunc.PythonModel):
    """A saved NeuralForecast directory (artifact `nf_dir`). `predict(history)`: the history frame
    (unique_id, ds, y); an event-aware version (tag features=events) also needs its event feature columns and,
    for future exogenous ones (fomc_day), h rows per series after the history with y empty
    (`models.events.future_rows`): see `models.forecasting.forecast`."""

    def load_context(self, context):
        from models.forecasting import load_model

        self.nf = load_model(context.artifacts["nf_dir"], accelerator="cpu")

    def predict(self, context, model_input, params=None):
        from models.forecasting import forecast

        return forecast(self.nf, model_input)


class BaselineModel(mlflow.pyfunc.PythonModel):
    """A naive baseline (artifact `baseline` = its JSON parameters); no weights."""

    def load_context(self, context):
        from models.baselines import BaselineForecaster

        with open(context.artifacts["baseline"]) as fh:
            self.forecaster = BaselineForecaster(**json.load(fh))

    def predict(self, context, model_input, params=None):
        out = self.forecaster.predict(model_input)
        return out.assign(lo=float("nan"), hi=float("nan"))
