"""Prometheus metrics of one proxy instance (its own registry, so tests can build many)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("ok", "daemon-error", "bad-request", "resource-not-found", "name-mismatch",
            "zone-mismatch", "timeout", "too-many-requests", "resource-disconnected",
            "client-gone", "body-too-large", "too-many-connections", "cluster-unavailable",
            "error")


class ProxyMetrics:
    """Connected resources, requests by outcome, wait time, daemon socket events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connected = Gauge("kachery_proxy_connected_resources",
                               "Resources whose daemon socket this instance holds",
                               registry=self.registry)
        self.waiting = Gauge("kachery_proxy_waiting_requests",
                             "Client requests waiting for a daemon's answer on this instance",
                             registry=self.registry)
        self.requests = Counter("kachery_proxy_requests_total",
                                "POST /r/{resource} requests by outcome", ["outcome"],
                                registry=self.registry)
        self.duration = Histogram("kachery_proxy_request_duration_seconds",
                                  "Time from a client request to its answer",
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1, 2.5, 5, 10, 25),
                                  registry=self.registry)
        self.daemon_events = Counter("kachery_proxy_daemon_events_total",
                                     "Daemon socket events (connected, refused, replaced, "
                                     "dropped-reply, invalid-message, closed)", ["event"],
                                     registry=self.registry)
        self._outcome = {o: self.requests.labels(o) for o in OUTCOMES}

    def bind_gauges(self, connected: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.connected.set_function(connected)
        self.waiting.set_function(waiting)

    def observe(self, outcome: str, seconds: float) -> None:
        counter = self._outcome.get(outcome)
        if counter is None:
            counter = self._outcome.setdefault(outcome, self.requests.labels(outcome))
        counter.inc()
        self.duration.observe(seconds)

    def event(self, name: str) -> None:
        self.daemon_events.labels(name).inc()
