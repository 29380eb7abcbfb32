"""Forecasting models for tradecast: frames, NHITS configs/builders, baselines, metrics,
rolling-origin evaluation, forecasting and plots.

Plain PyTorch / neuralforecast / pandas / numpy / matplotlib; never imports dagster or
mlflow. Heavy libraries are imported inside functions, so importing any submodule is cheap.
"""
