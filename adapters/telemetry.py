"""The Prometheus metrics idgate keeps, served at /metrics.

Module-level, as prometheus_client intends: its registry is per process, and with several workers
(`idgate serve --workers N`) its multiprocess mode adds the workers' files up at every scrape. Label
values are bounded sets (verdicts, error codes, routes without ids); nothing identifying is a label.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Latencies from a fraction of a millisecond (a cached read) to the timeouts (seconds).
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

VERIFICATIONS = Counter(
    "idgate_verifications",
    "Verifications that ended: result is the verdict (allow, deny, review) or `error`, with the error's code.",
    ["result", "code"],
)
PORTONE_SECONDS = Histogram(
    "idgate_portone_request_seconds",
    "Time of each request to PortOne (each attempt), by route and outcome (ok, server_error, failed, timeout).",
    ["route", "outcome"],
    buckets=_BUCKETS,
)
PORTONE_TOKENS = Counter(
    "idgate_portone_token_requests", "getToken calls to PortOne (each worker keeps its own token)."
)
STORE_SECONDS = Histogram(
    "idgate_store_seconds",
    "Time of each store operation on the hot path: a read, or a write until it is committed.",
    ["operation"],
    buckets=_BUCKETS,
)
STORE_READ = STORE_SECONDS.labels("read")
STORE_WRITE = STORE_SECONDS.labels("write")
