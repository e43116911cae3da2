"""Prometheus metrics of the server (one registry per app, so tests can build many apps).

Labels have bounded values only: routes are the app's route templates (anything else is ``other``),
event types are not labels (a client could invent millions).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ServeMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    leads: Counter
    unknown_event_types: Counter
    reloads: Counter
    model_info: Gauge
    body_too_large: Counter
    micro_batch: Histogram


def make_metrics() -> ServeMetrics:
    """Fresh metrics in their own registry."""
    reg = CollectorRegistry(auto_describe=True)
    return ServeMetrics(
        registry=reg,
        requests=Counter(
            "leadscore_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=reg,
        ),
        latency=Histogram(
            "leadscore_http_request_duration_seconds",
            "Time from request start to response end.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        leads=Counter(
            "leadscore_leads_scored",
            "Leads by endpoint and outcome (ok, invalid).",
            ["endpoint", "outcome"],
            registry=reg,
        ),
        unknown_event_types=Counter(
            "leadscore_unknown_event_types",
            "Events with a type outside the contract, by action taken.",
            ["action"],
            registry=reg,
        ),
        reloads=Counter(
            "leadscore_bundle_reloads",
            "Bundle loads by result (ok, refused) and trigger.",
            ["result", "trigger"],
            registry=reg,
        ),
        model_info=Gauge(
            "leadscore_model_info",
            "1 for the bundle being served.",
            ["model_version", "bundle_checksum"],
            registry=reg,
        ),
        body_too_large=Counter(
            "leadscore_request_body_too_large",
            "Requests refused with 413.",
            registry=reg,
        ),
        micro_batch=Histogram(
            "leadscore_micro_batch_leads",
            "Single-lead requests scored together in one feature build (see serve.batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=reg,
        ),
    )
