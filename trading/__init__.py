"""Trading: from forecasts to target positions (signals), and the walk-forward backtest after costs."""
