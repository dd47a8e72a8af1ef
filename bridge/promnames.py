"""The metric names Prometheus-style backends give what the bridge sends, so every path queries alike.

Grafana Cloud ingests OTLP into Mimir through Prometheus' OTLP translator
(UnderscoreEscapingWithSuffixes), so the name a user queries is not the name we
send: unit suffixes are added, `_total` is moved to the end of monotonic sums,
`_ratio` is added to unit-"1" gauges, `{...}` annotation units add nothing.
`prometheus_name` reproduces that rule (prometheus/otlptranslator, after the
OpenTelemetry spec's Prometheus compatibility document) so the README's table
is pinned by a test, `once --dry-run` can show the names, and the remote-write
sink writes the same names the OTLP path ends up with.
"""

from __future__ import annotations

import re
from typing import Literal

OTLPMetricType = Literal["gauge", "monotonic_sum", "sum", "histogram", "summary"]

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_INVALID = re.compile(r"[^a-zA-Z0-9:]")


def _unit_suffixes(unit: str) -> tuple[str, str]:
    """(main, per) suffixes of a UCUM unit: `s` -> seconds, `By/s` -> bytes + per_second; `{token}` -> nothing."""
    main_unit, _, per_unit = unit.partition("/")
    main_unit, per_unit = main_unit.strip(), per_unit.strip()
    main = _UNITS.get(main_unit, main_unit) if main_unit and not set(main_unit) & set("{}") else ""
    per = _PER_UNITS.get(per_unit, per_unit) if per_unit and not set(per_unit) & set("{}") else ""
    return _clean_unit(main), _clean_unit(f"per_{per}" if per else "")


def _clean_unit(unit: str) -> str:
    return re.sub(r"__+", "_", _INVALID.sub("_", unit)).removeprefix("_")


def prometheus_name(name: str, unit: str, metric_type: OTLPMetricType) -> str:
    """The metric name Prometheus' OTLP translator (with suffixes, underscore escaping) gives an OTLP metric."""
    tokens = [token for token in _INVALID.split(name) if token]
    main, per = _unit_suffixes(unit)
    if main in tokens:
        main = ""
    per = "" if per == "per_" else per.removesuffix("_")
    if per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [suffix for suffix in (main, per) if suffix]
    if metric_type == "monotonic_sum":
        tokens = [token for token in tokens if token != "total"] + ["total"]
    if unit == "1" and metric_type == "gauge":
        tokens = [token for token in tokens if token != "ratio"] + ["ratio"]
    translated = "_".join(tokens)
    return f"_{translated}" if translated[:1].isdigit() else translated
