"""Dagster definitions, jobs, schedules, sensors and the `tradecast` CLI."""
