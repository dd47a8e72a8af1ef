"""Self-metrics (prometheus-client) and logging with secrets redacted.

Every counter the pipeline, sources, sinks and delivery update lives here, so
the README's table of self-metrics has one source of truth.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from bridge import secrets

REGISTRY = CollectorRegistry(auto_describe=True)
#: process_cpu_seconds_total, process_resident_memory_bytes, open fds...: what a replica's capacity is judged by
ProcessCollector(registry=REGISTRY)

SCRAPES = Counter(
    "bridge_scrapes",
    "Scrapes by source and outcome (ok, http_401, timeout, ...).",
    ["source", "outcome"],
    registry=REGISTRY,
)
SCRAPE_DURATION = Histogram(
    "bridge_scrape_duration_seconds", "Time to fetch and parse one scrape.", ["source"], registry=REGISTRY
)
SAMPLES_IN = Counter("bridge_samples_in", "Samples parsed from sources.", ["source"], registry=REGISTRY)
PARSE_ERRORS = Counter("bridge_parse_errors", "Exposition lines skipped as malformed.", ["source"], registry=REGISTRY)
WINDOWS = Counter(
    "bridge_windows", "Windows by source and outcome (forwarded, duplicate).", ["source", "outcome"], registry=REGISTRY
)
GAPS = Counter("bridge_gaps", "Windows that could not be fetched and are lost upstream.", ["source"], registry=REGISTRY)
STATE_ENTRIES_IGNORED = Counter(
    "bridge_state_entries_ignored",
    "Window history (state_path) entries ignored, by reason: unreadable (the whole file), invalid (not a finite "
    "time), future (ahead of the clock: it would mute every window until then).",
    ["reason"],
    registry=REGISTRY,
)
WINDOW_LAG = Gauge(
    "bridge_window_lag_seconds",
    "Seconds between the end of the last forwarded window and its scrape.",
    ["source"],
    registry=REGISTRY,
)
LAST_SCRAPE_SUCCESS = Gauge(
    "bridge_last_scrape_success_timestamp_seconds",
    "Unix time of the last successful scrape.",
    ["source"],
    registry=REGISTRY,
)
POINTS_OUT = Counter("bridge_points_out", "Points acknowledged by the backend.", ["sink"], registry=REGISTRY)
PAYLOADS_OUT = Counter("bridge_payloads_out", "Payloads acknowledged by the backend.", ["sink"], registry=REGISTRY)
SEND_FAILURES = Counter(
    "bridge_send_failures", "Failed delivery attempts by sink and reason.", ["sink", "reason"], registry=REGISTRY
)
DROPPED_POINTS = Counter(
    "bridge_dropped_points",
    "Points dropped without delivery, by sink and reason.",
    ["sink", "reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("bridge_queue_batches", "Payloads waiting in a sink's queue.", ["sink"], registry=REGISTRY)
QUEUE_BYTES = Gauge("bridge_queue_bytes", "Payload bytes waiting in a sink's queue.", ["sink"], registry=REGISTRY)
LAST_SEND_SUCCESS = Gauge(
    "bridge_last_send_success_timestamp_seconds",
    "Unix time of the last acknowledged delivery.",
    ["sink"],
    registry=REGISTRY,
)

# ---- delivery (bridge/delivery) -----------------------------------------------
# Payloads the delivery layer gives up on also count their points in DROPPED_POINTS with the same reason.
DELIVERY_RETRIES = Counter(
    "bridge_delivery_retries", "Retryable delivery failures, each followed by a backoff.", ["sink"], registry=REGISTRY
)
DELIVERY_EVICTIONS = Counter(
    "bridge_delivery_evicted_payloads",
    "Payloads removed undelivered, by reason: queue_full, spool_full, larger_than_queue, too_old (past the sink's "
    "age limit), shutdown (no spool), spool_error.",
    ["sink", "reason"],
    registry=REGISTRY,
)
DELIVERY_OLDEST_AGE = Gauge(
    "bridge_delivery_oldest_age_seconds",
    "Age of the oldest undelivered payload's window end (0: none waiting).",
    ["sink"],
    registry=REGISTRY,
)
DELIVERY_SPOOL_BYTES = Gauge(
    "bridge_delivery_spool_bytes",
    "Size on disk of a sink's spool (database and write-ahead log).",
    ["sink"],
    registry=REGISTRY,
)
DELIVERY_RECOVERED = Counter(
    "bridge_delivery_recovered_payloads",
    "Unacknowledged payloads found in the spool at start-up.",
    ["sink"],
    registry=REGISTRY,
)
DELIVERY_SPOOL_FAILURES = Counter(
    "bridge_delivery_spool_failures",
    "Spool problems, by reason: damaged (moved aside at start), unusable, other_sink (the sink runs memory-only), "
    "corrupt_row (a stored payload unreadable, dropped), write_error (kept in memory), delete_error (re-sent later).",
    ["sink", "reason"],
    registry=REGISTRY,
)
# ---- end delivery -------------------------------------------------------------

# ---- sharding (bridge/sharding.py) -------------------------------------------
SHARD_SOURCES = Gauge(
    "bridge_shard_sources",
    "Sources this replica runs, by shard (index/count; 0/1 unsharded): its share of the config's sources.",
    ["shard"],
    registry=REGISTRY,
)
SOURCE_OWNED = Gauge(
    "bridge_source_owned",
    "1 for each source this replica runs: across the replicas of one config, each source appears exactly once.",
    ["source"],
    registry=REGISTRY,
)
# ---- end sharding ---------------------------------------------------------------

# ---- warm standby (bridge/ha.py) ------------------------------------------------
HA_ACTIVE = Gauge(
    "bridge_ha_active",
    "1 while this replica holds its Lease and runs the sources, 0 on standby: per Lease, exactly one replica is 1.",
    ["lease"],
    registry=REGISTRY,
)
HA_TRANSITIONS = Counter(
    "bridge_ha_transitions_total",
    "Times this replica became active (took the Lease) or standby (lost it or could not renew it in time).",
    ["lease", "to"],
    registry=REGISTRY,
)
HA_LEASE_ERRORS = Counter(
    "bridge_ha_lease_errors_total",
    "Lease reads or writes the API server refused or did not answer (409 and 404 are answers, not errors).",
    ["lease"],
    registry=REGISTRY,
)

# ---- series tables (bridge/series) -------------------------------------------
SERIES_TRACKED = Gauge(
    "bridge_series_tracked",
    "Series in a series table (owner: the source, or `shared` for series built from points).",
    ["owner"],
    registry=REGISTRY,
)
SERIES_EVICTED = Counter(
    "bridge_series_evicted",
    "Series a table forgot, with everything remembered about them (idle: not seen for series.idle_seconds; "
    "limit: series.max_series reached); a counter that returns starts a new life.",
    ["owner", "reason"],
    registry=REGISTRY,
)
# ---- end series tables --------------------------------------------------------

# ---- OTLP sinks (bridge/sinks/otlp) ------------------------------------------
# Points a backend rejects in a partial success count as DROPPED_POINTS{reason="partial_success"}.
# ---- end OTLP sinks -----------------------------------------------------------

# ---- Datadog sink (bridge/sinks/datadog) --------------------------------------
DATADOG_SPLITS = Counter(
    "bridge_datadog_payload_splits", "Series bodies halved after Datadog answered 413.", ["sink"], registry=REGISTRY
)


class RedactingFilter(logging.Filter):
    """Render each record's message once and strip every registered secret from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = secrets.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = secrets.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "hpack", "asyncio"):  # hpack logs every header block at DEBUG
        logging.getLogger(noisy).setLevel(logging.WARNING)
