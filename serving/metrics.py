"""Prometheus metrics of one service (its own registry, so several services can live in one process)."""

from __future__ import annotations

from typing import Any

from serving.breaker import STATES

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class ServiceMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: one line per counter is what dashboards read

        self.registry = r = CollectorRegistry()
        self.requests = Counter("tradecast_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("tradecast_request_seconds", "Time spent in the handler, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.forecasts = Counter("tradecast_forecasts", "Forecasts served by arm, model version and fallback",
                                 ["arm", "model_version", "fallback"], registry=r)
        self.bars = Counter("tradecast_bars", "Bars accepted into the ring buffers", registry=r)
        self.breaker = Gauge("tradecast_breaker_state", "Circuit breaker per arm: 0 closed, 1 half-open, 2 open",
                             ["arm"], registry=r)
        self.breaker_failures = Gauge("tradecast_breaker_failures", "Primary model failures per arm", ["arm"],
                                      registry=r)
        self.model = Gauge("tradecast_model_info", "The model serving each arm (value 1)",
                           ["arm", "model", "version", "variant"], registry=r)
        self.swaps = Gauge("tradecast_model_swaps", "Hot swaps since start", registry=r)
        self.symbols = Gauge("tradecast_symbols", "Symbols with a buffer", registry=r)
        self.cache_hits = Gauge("tradecast_cache_hits", "Forecasts answered from the cache", registry=r)
        self.live_mae = Gauge("tradecast_live_mae", "Live MAE per arm and version", ["arm", "model_version"],
                              registry=r)
        self.live_mase = Gauge("tradecast_live_mase", "Live MASE per arm and version", ["arm", "model_version"],
                               registry=r)
        self.live_n = Gauge("tradecast_live_scored", "Live forecast steps scored", ["arm", "model_version"],
                            registry=r)

    def render(self, service: Any) -> bytes:
        """Refresh the state gauges from the service, then the Prometheus text format."""
        from prometheus_client import generate_latest

        self.model.clear()
        for arm, guarded in service.arms().items():
            self.breaker.labels(arm).set(STATES.get(guarded.state, -1))
            self.breaker_failures.labels(arm).set(guarded.failures)
            info = guarded.primary.info
            self.model.labels(arm, info.name, info.version, info.variant).set(1)
        self.swaps.set(service.swaps)
        self.symbols.set(len(service.buffers))
        self.cache_hits.set(service.predictor.hits)
        for row in service.live.summary():
            labels = (row["arm"], row["model_version"])
            self.live_n.labels(*labels).set(row["n"])
            if row["n"]:
                self.live_mae.labels(*labels).set(row["mae"])
                self.live_mase.labels(*labels).set(row["mase"])
        return generate_latest(self.registry)
