"""The Datadog Agent's OpenMetrics V2 check on the bench page: the peer of bench/bench_cycle.py.

Runs in the check's own venv (bench_cycle.py installs it under .cache/bench-datadog-check/; its pins clash
with ours), so it imports nothing from the bridge. Each run is `check.run()`, as the Agent calls it:
`check.check()` alone skips the initialisations that build the scraper and scrapes nothing. Submissions
go to the stub aggregator the integrations' own tests use, reset between runs; prints one JSON line.

    .cache/bench-datadog-check/bin/python bench/cycle_peers/datadog_check.py URL [--runs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from importlib.metadata import version
from typing import Any

from datadog_checks.base import OpenMetricsBaseCheckV2
from datadog_checks.base.stubs import aggregator

#: The V2 check stops at 2,000 contexts unless told otherwise (DEFAULT_METRIC_LIMIT); the page has 100,000.
METRIC_LIMIT = 1_000_000

# The stub checks every submission's tag names for reserved ones (an import and a split per tag): a test-only cost
# the Agent's aggregator does not have, so it is switched off as ddev allows.
os.environ["DDEV_SKIP_GENERIC_TAGS_CHECK"] = "1"


def measure(url: str, runs: int) -> dict[str, Any]:
    instance = {
        "openmetrics_endpoint": url,
        "namespace": "bench",
        "metrics": [".*"],
        "max_returned_metrics": METRIC_LIMIT,
    }
    check = OpenMetricsBaseCheckV2("bench", {}, [instance])
    out = []
    for _ in range(runs):
        aggregator.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        error = check.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if error:
            raise SystemExit(f"check.run() failed: {error}")
        submissions = sum(len(aggregator.metrics(name)) for name in aggregator.metric_names)
        out.append({"wall_s": wall, "cpu_s": cpu, "submissions": submissions})
    return {
        "runs": out,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "version": version("datadog-checks-base"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(measure(args.url, args.runs)))


if __name__ == "__main__":
    main()
