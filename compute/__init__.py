"""Compute on Ray: the local head (or an existing cluster), and the training tasks shipped to it. Plain code, no
Dagster: assets read the warehouse, hand frames to these functions, and write what comes back."""
