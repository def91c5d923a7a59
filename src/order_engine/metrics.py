"""Prometheus metrics. The API serves them at /metrics; each worker serves its own on
WORKER_METRICS_PORT (Prometheus scrapes every worker, as the compose profile sets up)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)

ORDERS_SUBMITTED = Counter("oe_orders_submitted_total", "Orders acknowledged by the API")
ORDER_TRANSITIONS = Counter(
    "oe_order_transitions_total", "Order status changes, by the status entered", ["status"]
)
STAGE_SECONDS = Histogram(
    "oe_order_stage_seconds", "Time an order spent in a status before leaving it",
    ["stage"], buckets=STAGE_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "oe_order_end_to_end_seconds", "From submission to the terminal status",
    ["outcome"], buckets=STAGE_BUCKETS,
)
ATTEMPTS = Histogram(
    "oe_order_attempts", "Attempts an order took, counted at its terminal status",
    buckets=(1, 2, 3, 4, 5, 10, 20),
)
RETRIES = Counter("oe_order_retries_total", "Attempts that failed transiently, by reason",
                  ["reason"])
FAILURES = Counter("oe_order_failures_total", "Orders failed, by reason", ["reason"])
VENUE_SECONDS = Histogram(
    "oe_venue_quote_seconds", "Time a venue took to serve its pools for routing", ["venue"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2),
)
ROUTING_SECONDS = Histogram("oe_routing_seconds", "Router time for one order (in memory)",
                            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05))
JOBS_IN_FLIGHT = Gauge("oe_worker_jobs_in_flight", "Orders this worker is executing now")
QUEUE_DEPTH = Gauge("oe_queue_depth", "Jobs in the queue (waiting, deferred or running)")
OPEN_ORDERS = Gauge("oe_open_orders", "Orders not yet terminal, by status", ["status"])
WEBSOCKETS = Gauge("oe_websocket_subscriptions", "Open WebSocket subscriptions of this API")
