"""Thin Dagster assets and checks, one module per data noun."""

import warnings

# Partitioned asset checks (one result per asset class) are a preview feature of Dagster 1.13; we use
# them knowingly, so their import-time notice is silenced here and nowhere else.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
