"""The code of every registered tradecast model (MLflow "models from code"): `ModelRegistry.log_version` logs this
file as the model's code, so nothing is pickled. `mlflow.pyfunc.load_model("models:/nhits-crypto-close@champion")`
runs it and then `load_context`, which rebuilds the forecaster from the version's JSON/safetensors artifacts.

The project itself never runs the stored copy: `ModelRegistry.load` reads the artifacts with the installed code
(`storage.pyfunc.load_dir`). Never import this module: it calls `mlflow.models.set_model` when run."""

import mlflow
import mlflow.pyfunc
import pandas as pd


class TradecastModel(mlflow.pyfunc.PythonModel):
    """An NHITS version (artifact `nf_dir`) or a baseline one (artifact `baseline`)."""

    def load_context(self, context):
        from storage.pyfunc import from_artifacts

        self.model = from_artifacts(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.predict(model_input)


mlflow.models.set_model(TradecastModel())
