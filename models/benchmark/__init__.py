"""The benchmark comparison (plain code, no Dagster): NHITS vs PatchTST, iTransformer, TimesNet and TiDE beside
naive baselines -- accuracy, training cost, latency, throughput and peak memory.

specs (protocols and budgets) · datasets (market sets, paper protocol, fraction splits) · ltsf (CSV files) ·
zoo (the models) · measure (timers, memory, latency) · runner (one data set) · report (JSON, markdown, plot).
"""
