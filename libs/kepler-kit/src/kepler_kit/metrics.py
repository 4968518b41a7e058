"""Prometheus metrics every service exposes at /metrics."""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "kepler_http_requests_total",
    "HTTP requests handled, by route template",
    ["service", "method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "kepler_http_request_duration_seconds",
    "HTTP request latency, by route template",
    ["service", "method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter("kepler_jobs_total", "Jobs run, by outcome", ["service", "job", "outcome"], registry=REGISTRY)
JOB_DURATION = Histogram(
    "kepler_job_duration_seconds",
    "Job run time",
    ["service", "job"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900),
)
AFTER_COMMIT_FAILURES = Counter(
    "kepler_after_commit_failures_total",
    "Enqueues and publications that failed after their transaction committed (the sweeper catches up)",
    ["kind", "name"],
    registry=REGISTRY,
)
JOBS_RETRIED = Counter(
    "kepler_jobs_retried_total",
    "Jobs retried after Postgres or Redis failed them at the connection level",
    ["service", "job"],
    registry=REGISTRY,
)
JOBS_RESCUED = Counter(
    "kepler_jobs_rescued_total", "Pending rows the sweeper re-enqueued", ["service", "job"], registry=REGISTRY
)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


EVENTS_PUBLISHED = Counter(
    "kepler_events_published_total", "Platform events published, by kind", ["kind"], registry=REGISTRY
)
EVENTS_CONSUMED = Counter(
    "kepler_event_consumer_events_total",
    "Platform events handled, by consumer",
    ["consumer"],
    registry=REGISTRY,
)
EVENT_CONSUMER_LAG = Gauge(
    "kepler_event_consumer_lag_seconds",
    "Age of the last event a consumer handled when it handled it (0 when caught up)",
    ["consumer"],
    registry=REGISTRY,
)
EVENT_CONSUMER_FAILURES = Counter(
    "kepler_event_consumer_failures_total",
    "Consumer steps that failed (the batch is retried, never skipped)",
    ["consumer"],
    registry=REGISTRY,
)
EVENTS_PRUNED = Counter(
    "kepler_events_pruned_total", "Platform events deleted after the retention period", registry=REGISTRY
)
EVENT_CONSUMER_BEHIND_RETENTION = Gauge(
    "kepler_event_consumer_behind_retention",
    "1 when a consumer had not consumed events the retention deleted (it never will)",
    ["consumer"],
    registry=REGISTRY,
)
