"""Prometheus metrics of one gateway instance (its own registry, so tests can build many).

Served at ``GET /metrics``. Requests are counted once each response was sent (see
:mod:`.requestlog`); on-demand lookups by :mod:`.on_demand`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ON_DEMAND_OUTCOMES = ("hit", "miss", "timeout", "negative-cache", "no-resources", "overloaded",
                      "disabled", "skipped", "error")
"""hit: a resource uploaded the file; miss: every resource answered without it; timeout:
nothing within onDemandWaitSec; negative-cache: a recent miss; no-resources: the zone has
none live; overloaded: no free flight (onDemandMaxInFlight) within the wait, or too many
misses already waiting for one; disabled: ``onDemand: false``;
skipped: the caller is itself a resource of the zone; error: the lookup itself failed
(logged)."""


class GatewayMetrics:
    """Requests by endpoint and status, bytes, verification failures, on-demand lookups."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kachery_gateway_requests_total",
                                "Requests by endpoint (gateway call type or route) and HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.duration = Histogram("kachery_gateway_request_duration_seconds",
                                  "Time from a request to its last byte sent", ["endpoint"],
                                  buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                           2.5, 5, 10, 30, 60),
                                  registry=self.registry)
        self.bytes = Counter("kachery_gateway_bytes_total",
                             "Body bytes by direction (received, sent)", ["direction"],
                             registry=self.registry)
        self.verification_failures = Counter(
            "kachery_gateway_verification_failures_total",
            "Uploads refused because their bytes were not the declared file",
            registry=self.registry)
        self.on_demand = Counter("kachery_gateway_on_demand_total",
                                 "findFile misses handled on demand, by outcome", ["outcome"],
                                 registry=self.registry)
        self.on_demand_duration = Histogram(
            "kachery_gateway_on_demand_wait_seconds",
            "How long a findFile waited for an on-demand upload, by outcome", ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
            registry=self.registry)
        self.on_demand_waiting = Gauge("kachery_gateway_on_demand_waiting",
                                       "findFile calls waiting for an on-demand upload now",
                                       registry=self.registry)
        self.on_demand_queued = Gauge("kachery_gateway_on_demand_queued",
                                      "findFile misses waiting for a free on-demand flight "
                                      "(onDemandMaxInFlight reached)", registry=self.registry)
        self.on_demand_requests = Counter(
            "kachery_gateway_on_demand_resource_requests_total",
            "Requests sent to resources, by answer (uploaded, not-found, error, unavailable, "
            "timeout)", ["answer"], registry=self.registry)
        for outcome in ON_DEMAND_OUTCOMES:
            self.on_demand.labels(outcome)

    def observe_on_demand(self, outcome: str, seconds: float) -> None:
        self.on_demand.labels(outcome).inc()
        self.on_demand_duration.labels(outcome).observe(seconds)
