"""Thin Dagster assets and checks, one module per data noun."""

import warnings

# Partitioned asset checks (one result per asset class) are a preview feature of Dagster 1.13; we use
# them knowingly, so their import-time notice is silenced here and nowhere else.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
# the class-partitioned trading assets read their class's (class x target) partitions through this mapping (beta
# in Dagster 1.13; the documented way to map a multi-partition dimension)
warnings.filterwarnings("ignore", message="Class `MultiToSingleDimensionPartitionMapping` is currently in beta")
