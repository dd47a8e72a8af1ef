"""Mutated expositions through the whole source path: HTTP fetch, parse, classify, admit.

`python -m tests.fuzz_sources --count 10000` is the full run (its figures are in
docs/reliability.md); tests/test_hostile_sources.py runs a few hundred in CI.
Each round serves the base exposition with a few lines of one to three families
mutated (bytes flipped, cut, doubled, non-numbers, huge or non-finite numbers and
timestamps, stray braces and quotes, non-UTF-8) to a real `prometheus` source on
127.0.0.1 and checks that the collect did not raise and that every family whose
lines were left alone arrived exactly as in the unmutated scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Batch
from bridge.sources.prometheus import PrometheusSource
from tests.servers import ExpositionServer, Response

#: Family name -> its lines. Cerebras-shaped families (per-minute counts declared as gauges, statistic
#: labels in both spellings) next to an ordinary exporter's counter, histogram and summary.
BASE: dict[str, list[str]] = {
    "requests_count_total": [
        "# HELP requests_count_total Requests in the last complete minute.",
        "# TYPE requests_count_total gauge",
        'requests_count_total{endpoint="llama-3.3-70b",organization_id="org_fuzz"} 120',
        'requests_count_total{endpoint="qwen-3-32b",organization_id="org_fuzz"} 7',
    ],
    "requests_failure_total": [
        "# TYPE requests_failure_total gauge",
        'requests_failure_total{endpoint="llama-3.3-70b",http_code="429",organization_id="org_fuzz"} 3',
        'requests_failure_total{endpoint="llama-3.3-70b",http_code="500",organization_id="org_fuzz"} 1',
    ],
    "ttft_seconds": [
        "# HELP ttft_seconds Time to first token.",
        "# TYPE ttft_seconds gauge",
        'ttft_seconds{endpoint="llama-3.3-70b",statistic="p50"} 0.21',
        'ttft_seconds{endpoint="llama-3.3-70b",percentile="p95"} 0.48',
        'ttft_seconds{endpoint="qwen-3-32b",statistic="avg"} NaN',
    ],
    "tpot_seconds": [
        "# TYPE tpot_seconds gauge",
        'tpot_seconds{endpoint="llama-3.3-70b",statistic="p99"} 0.0018',
    ],
    "inference_endpoint_status": [
        "# TYPE inference_endpoint_status gauge",
        'inference_endpoint_status{endpoint="llama-3.3-70b"} 1',
        'inference_endpoint_status{endpoint="qwen-3-32b"} -1',
    ],
    "cache_rate": ["# TYPE cache_rate gauge", 'cache_rate{endpoint="llama-3.3-70b"} 0.375'],
    "http_requests": [
        "# HELP http_requests_total Requests served.",
        "# TYPE http_requests_total counter",
        'http_requests_total{code="200",method="get"} 1027',
        'http_requests_total{code="500",method="get"} 3',
    ],
    "request_duration_seconds": [
        "# TYPE request_duration_seconds histogram",
        'request_duration_seconds_bucket{le="0.1"} 5',
        'request_duration_seconds_bucket{le="0.5"} 9',
        'request_duration_seconds_bucket{le="+Inf"} 10',
        "request_duration_seconds_sum 2.5",
        "request_duration_seconds_count 10",
    ],
    "rpc_seconds": [
        "# TYPE rpc_seconds summary",
        'rpc_seconds{quantile="0.5"} 0.05',
        'rpc_seconds{quantile="0.99"} 0.2',
        "rpc_seconds_sum 12.5",
        "rpc_seconds_count 200",
    ],
    "temperature_celsius": ["temperature_celsius 21.5"],
}

_JUNK = [
    "{",
    "}",
    '"',
    "\\",
    ",",
    "=",
    " ",
    "\t",
    "#",
    "\x00",
    "\xff",
    "é",
    "NaN",
    "+Inf",
    "-Inf",
    "1e309",
    "99999999999999999999",
    "-5000",
    "_",
    "le",
    'le="abc"',
    'quantile="x"',
    "\r",
    "0x1F",
]


def _mutate_line(line: str, rng: random.Random) -> str:
    choice = rng.randrange(9)
    if not line:
        return rng.choice(_JUNK)
    at = rng.randrange(len(line) + 1)
    if choice == 0:  # flip one character
        return line[:at] + chr(rng.randrange(1, 0x2FF)) + line[at + 1 :]
    if choice == 1:  # cut the line short
        return line[:at]
    if choice == 2:  # insert junk
        return line[:at] + rng.choice(_JUNK) + line[at:]
    if choice == 3:  # a non-finite, huge or garbage value
        return line.rsplit(" ", 1)[0] + " " + rng.choice(["NaN", "Inf", "1e400", "abc", "", "1_000"])
    if choice == 4:  # a timestamp no backend can take
        return f"{line} {rng.choice(['NaN', 'Inf', '-5000', '99999999999999999999', '1e30', 'x'])}"
    if choice == 5:  # a label value that breaks the label set
        return line.replace('"', rng.choice(["", "\\", '"}', "\n", '",']), 1)
    if choice == 6:  # a huge label value
        return line.replace('="', '="' + "v" * rng.randrange(1, 200_000), 1)
    if choice == 7:  # the whole line doubled onto one line
        return line + line
    return line.replace("le=", 'le="nope",x=') if "le=" in line else line.replace(" ", "", 1)


def mutate(rng: random.Random) -> tuple[str, set[str]]:
    """A mutated exposition and the families whose lines were touched."""
    touched = set(rng.sample(sorted(BASE), rng.randint(1, 3)))
    lines = []
    for family, family_lines in BASE.items():
        for original in family_lines:
            line = original
            if family in touched and rng.random() < 0.5:
                line = _mutate_line(original, rng)
                if rng.random() < 0.1:
                    lines.append(line)  # and once more
            lines.append(line)
        if family in touched and rng.random() < 0.1:
            lines.append(_mutate_line(family_lines[-1], rng))  # an extra bad line after the family
    return "\n".join(lines) + "\n", touched


def _shape(batch: Batch) -> dict[str, Any]:
    """What must not change for an untouched family: kind, temporality and each point's labels and value."""
    return {
        m.name: (m.kind, m.temporality, m.unit, sorted((p.attributes, repr(p.value)) for p in m.points))
        for m in batch.metrics
    }


@dataclass
class FuzzFigures:
    rounds: int
    crashes: int
    lost_families: int
    mutated_families: int
    seconds: float


async def fuzz(count: int, seed: int = 20261201) -> FuzzFigures:
    """Run `count` mutated scrapes; every failure is recorded, none raised."""
    rng = random.Random(seed)
    clock = ManualClock()
    config = parse_config(
        {
            "sources": {"fuzz": {"type": "prometheus", "url": "http://placeholder/"}},
            "sinks": {"out": {"type": "console"}},
        }
    )
    crashes = lost = mutated = 0
    started = time.perf_counter()
    with ExpositionServer() as server:
        source_config = config.sources["fuzz"].model_copy(update={"url": server.url})
        source = PrometheusSource("fuzz", source_config, Context(clock=clock))
        await source.start()
        try:
            server.respond(Response(200, "\n".join(line for lines in BASE.values() for line in lines) + "\n"))
            baseline = await source.collect(clock.now())
            assert baseline is not None and len(baseline.metrics) == len(BASE), "the base exposition itself"
            expected = _shape(baseline)
            for _ in range(count):
                text, touched = mutate(rng)
                mutated += len(touched)
                server.respond(Response(200, text.encode("utf-8", "surrogatepass")))
                await clock.advance(60)
                try:
                    batch = await source.collect(clock.now())
                except Exception:  # noqa: BLE001 (counting exactly this is the point)
                    batch = None
                    crashes += 1
                if source.last_error == "internal_error":  # contained, but still a bug
                    crashes += 1
                got = _shape(batch) if batch is not None else {}
                lost += sum(1 for family in expected if family not in touched and got.get(family) != expected[family])
        finally:
            await source.close()
    return FuzzFigures(count, crashes, lost, mutated, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_sources", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # every mutated scrape warns about its bad lines
    figures = asyncio.run(fuzz(args.count, args.seed))
    print(
        f"{figures.rounds} mutated expositions ({figures.mutated_families} families mutated) in "
        f"{figures.seconds:.0f} s: {figures.crashes} crashes, {figures.lost_families} well-formed families lost"
    )
    return 0 if figures.crashes == 0 and figures.lost_families == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
