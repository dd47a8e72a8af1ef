"""Benchmark bridge.parser against prometheus_client on Cerebras-like expositions.

Run from the repo root: `python bench/bench_parse.py`. The input is one scrape
of the Cerebras Metrics API shape (60 endpoints over 3 organisations, 9
families, 540 distinct label sets, 1,380 samples) repeated until it holds at
least 100k samples, as successive scrapes of one target would be. Our parser is
timed cold (label cache cleared before every run, so only repeats within the
text hit it) and warm (cache filled by a previous parse, the steady state of a
scraper); prometheus_client is timed in the same run. A second input is one
big scrape with no repeats, where 39% of lines carry a label text not seen
before. Best of REPEATS runs, in CPU and wall-clock time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families

from bridge import parser

TARGET_SAMPLES = 100_000
REPEATS = 5

_COUNT_FAMILIES = [
    ("requests_count_total", "Total request count (all HTTP codes) in the last complete minute"),
    ("requests_success_total", "Total successful requests (HTTP 200) in the last complete minute"),
    ("input_tokens_total", "Total input tokens for successful requests in the last complete minute"),
    ("output_tokens_total", "Total output tokens for successful requests in the last complete minute"),
]
_LATENCY_FAMILIES = [
    ("ttft_seconds", "Time to first token percentiles in seconds"),
    ("queue_time_seconds", "Queue time percentiles in seconds"),
    ("e2e_latency_seconds", "End-to-end API latency percentiles in seconds"),
]
_STATISTICS = ("avg", "p50", "p90", "p95", "p99")
_HTTP_CODES = ("429", "500", "503")


def scrape_text(endpoints_per_org: int = 20) -> str:
    """One scrape: every family for every (organization, endpoint) pair, 3 organisations."""
    pairs = [
        (f"org_{o:06x}", f"org{o}-endpoint-{e:04d}-llama-3.3-70b") for o in range(3) for e in range(endpoints_per_org)
    ]
    out = [
        "# HELP inference_endpoint_status Status of inference endpoint (-1=error calculating status, 0=down, 1=up)",
        "# TYPE inference_endpoint_status gauge",
    ]
    out += [f'inference_endpoint_status{{endpoint="{e}",organization_id="{o}"}} 1.0' for o, e in pairs]
    for i, (family, help_) in enumerate(_COUNT_FAMILIES):
        out += [f"# HELP {family} {help_}", f"# TYPE {family} gauge"]
        out += [
            f'{family}{{endpoint="{e}",organization_id="{o}"}} {1000.0 * (i + 1) + n}' for n, (o, e) in enumerate(pairs)
        ]
    out += [
        "# HELP requests_failure_total Total failed requests by HTTP code in the last complete minute",
        "# TYPE requests_failure_total gauge",
    ]
    out += [
        f'requests_failure_total{{endpoint="{e}",http_code="{c}",organization_id="{o}"}} {n % 7}.0'
        for n, (o, e) in enumerate(pairs)
        for c in _HTTP_CODES
    ]
    for family, help_ in _LATENCY_FAMILIES:
        out += [f"# HELP {family} {help_}", f"# TYPE {family} gauge"]
        out += [
            f'{family}{{endpoint="{e}",organization_id="{o}",statistic="{s}"}} {0.013 * (n + 1) * (k + 1):.4f}'
            for n, (o, e) in enumerate(pairs)
            for k, s in enumerate(_STATISTICS)
        ]
    return "\n".join(out) + "\n\n"


def sample_count(text: str) -> int:
    """Samples in a text, parsed cleanly (the bench input must have no bad lines)."""
    result = parser.parse(text)
    assert result.errors == 0
    return sum(len(f.samples) for f in result.families)


def exposition() -> tuple[str, int]:
    """Enough repeated scrapes to reach TARGET_SAMPLES; returns the text and its sample count."""
    one = scrape_text()
    copies = -(-TARGET_SAMPLES // sample_count(one))
    return one * copies, sample_count(one) * copies


def big_scrape() -> tuple[str, int]:
    """One scrape of TARGET_SAMPLES with no repeats: 39% of its lines carry a label text not seen before."""
    text = scrape_text(endpoints_per_org=-(-TARGET_SAMPLES // (3 * 23)))
    return text, sample_count(text)


def best_seconds(run: Callable[[], object], setup: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over REPEATS runs; CPU time is the steadier
    figure on a shared machine, where other processes take turns on the cores."""
    wall = cpu = float("inf")
    for _ in range(REPEATS):
        setup()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall, cpu


def clear_cache() -> None:
    parser._label_cache.clear()  # a cold start needs it; the cache is deliberately private


def main() -> None:
    text, samples = exposition()
    big, big_samples = big_scrape()

    cold = best_seconds(lambda: parser.parse(text), clear_cache)
    warm = best_seconds(lambda: parser.parse(text))
    reference = best_seconds(lambda: list(text_string_to_metric_families(text)))
    big_cold = best_seconds(lambda: parser.parse(big), clear_cache)

    lines, megabytes = len(text.splitlines()), len(text) / 1e6
    print(f"repeated scrapes: {samples} samples, {lines} lines, {megabytes:.1f} MB; best of {REPEATS}")
    report("bridge.parser, cold label cache", samples, cold)
    report("bridge.parser, warm label cache", samples, warm)
    report("prometheus_client.parser", samples, reference)
    print(f"ratio (CPU): {reference[1] / cold[1]:.1f}x cold, {reference[1] / warm[1]:.1f}x warm")
    print(f"one big scrape: {big_samples} samples, 39% of label texts new")
    report("bridge.parser, cold label cache", big_samples, big_cold)


def report(label: str, samples: int, seconds: tuple[float, float]) -> None:
    wall, cpu = seconds
    print(f"  {label:34} {samples / cpu:10,.0f} samples/s CPU  {samples / wall:10,.0f} samples/s wall")


if __name__ == "__main__":
    main()
