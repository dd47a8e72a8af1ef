"""A `jsonl` capture turned into what Mimir would store from the OTLP path, as an OpenMetrics file for promtool.

`promtool tsdb create-blocks-from openmetrics` loads it into a real Prometheus, so the
dashboards' PromQL can be proven against data until the remote-write sink exists.
The conversion follows the README ("Mapping to OTLP", "What a Grafana user types in PromQL"):

- names: the bridge's own OTLP -> Prometheus rule (`prometheus_name`: `_total` on monotonic sums,
  `_ratio` on unit-1 gauges, unit suffixes);
- a delta counter becomes the cumulative sink's running total per series, stamped at its window's
  end (the OTLP point time); a series absent from a window repeats its total until the series table
  forgets it (`series.idle_seconds`, default one hour);
- NaN gauges (an idle endpoint) are left out: Mimir stores a staleness marker, which the OpenMetrics
  text cannot carry; for a series that is never a number the two read the same;
- job = service.name (`metrics-bridge`), instance = service.instance.id (the source's name);
  the resource lands in `target_info` (`cerebras.organization_id` -> `cerebras_organization_id`);
- the bridge's self-metrics come from snapshots of its /metrics, labelled as a scrape would label them.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from bridge.promnames import prometheus_name

IDLE_SECONDS = 3600.0
SELF_LABELS = {"job": "bridge", "instance": "bridge:9464"}
Series = tuple[str, tuple[tuple[str, str], ...]]


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def convert(capture: Iterable[str], snapshots: Iterable[tuple[float, str]]) -> str:
    """jsonl lines + (unix time, /metrics text) snapshots -> an OpenMetrics exposition with timestamps."""
    samples: dict[Series, dict[float, float]] = defaultdict(dict)
    deltas: dict[Series, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    ends: set[float] = set()
    for line in capture:
        point = json.loads(line)
        end = point["end_ns"] / 1e9
        ends.add(end)
        base = {"job": "metrics-bridge", "instance": point["source"]}
        info = {**base, **{_label(k): str(v) for k, v in point["resource"].items()}}
        samples["target_info", tuple(sorted(info.items()))][end] = 1.0
        counter = point["kind"] == "counter"
        name = prometheus_name(point["name"], point["unit"], "monotonic_sum" if counter else "gauge")
        series = (name, tuple(sorted({**base, **point["attributes"]}.items())))
        value = math.nan if point["value"] == "NaN" else float(point["value"])
        if counter:
            deltas[series][end] += value
        elif not math.isnan(value):
            samples[series][end] = value
    for series, by_end in deltas.items():
        total, seen = 0.0, None
        for end in sorted(e for e in ends if e >= min(by_end)):
            if end in by_end:
                total, seen = total + by_end[end], end
            if seen is not None and end - seen <= IDLE_SECONDS:
                samples[series][end] = total
    for at, text in snapshots:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.endswith("_created") and math.isfinite(sample.value):
                    samples[sample.name, tuple(sorted({**SELF_LABELS, **sample.labels}.items()))][at] = sample.value
    lines = []
    for (name, labels), by_time in sorted(samples.items()):  # a family's samples together, each series in time order
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.extend(f"{name}{{{rendered}}} {value!r} {at:.3f}" for at, value in sorted(by_time.items()))
    return "\n".join([*lines, "# EOF"]) + "\n"
