"""The fault suite's cases. The `fault(name, checked)` / `slow_chaos` markers, the `chaos_detail` fixture and the
report that `make chaos` writes (benchmarks/results/chaos-*.md) live in tests/fault_report.py, a plugin that
tests/conftest.py loads for the whole test tree, so fault cases elsewhere (tests/pipelines, tests/serving) report
too."""
