"""The `limit` transform: the first series stay, new ones past a limit are dropped, counted and warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bridge import telemetry
from bridge.config import ConfigError, parse_config
from bridge.model import NS_PER_S, Batch, Kind, Metric, Point
from bridge.pipeline import Pipeline, build_transforms
from bridge.transforms.limit import Limit
from tests.conftest import CEREBRAS_FIXTURES
from tests.faults.scenarios import value
from tests.test_cli import cli

HOUR_NS = 3600 * NS_PER_S


def limit(place: str = "*", **settings: int) -> Limit:
    config = parse_config(
        {
            "sources": {"f": {"type": "file", "path": "x"}},
            "sinks": {"c": {"type": "console"}},
            "transforms": [{"type": "limit", **settings}],
        }
    )
    (transform,) = build_transforms(config.transforms, place)
    assert isinstance(transform, Limit)
    return transform


def window(end_ns: int, families: dict[str, list[str]]) -> Batch:
    """A batch with one point per (family, endpoint), each series seen at this window, as a source marks them."""
    metrics = [
        Metric(name, Kind.GAUGE, [Point((("endpoint", e),), 1.0, end_ns - 60 * NS_PER_S, end_ns) for e in endpoints])
        for name, endpoints in families.items()
    ]
    for metric in metrics:
        for series in metric.series:
            series.seen_ns = end_ns
    return Batch("src", (), end_ns - 60 * NS_PER_S, end_ns, metrics)


def kept(batch: Batch) -> dict[str, list[str]]:
    return {m.name: [dict(s.attributes)["endpoint"] for s in m.series] for m in batch.metrics}


def test_the_first_series_stay_admitted_and_new_ones_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    transform = limit("place-a", max_series_per_family=2)
    before = value(telemetry.DROPPED_POINTS, sink="place-a", reason="cardinality")
    t = 10 * HOUR_NS
    with caplog.at_level(logging.WARNING, logger="bridge.transforms.limit"):
        first = transform.apply(window(t, {"lat": ["a", "b", "c"], "ok": ["a"]}))
        second = transform.apply(window(t + 60 * NS_PER_S, {"lat": ["d", "c", "b", "a"], "ok": ["a"]}))
    assert kept(first) == {"lat": ["a", "b"], "ok": ["a"]}
    assert kept(second) == {"lat": ["b", "a"], "ok": ["a"]}, "the same two, not a new cut each window"
    assert value(telemetry.DROPPED_POINTS, sink="place-a", reason="cardinality") - before == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, "one warning per family per hour"
    assert "family lat" in warnings[0] and "max_series_per_family 2" in warnings[0]
    assert transform.cut == {"lat": 3}


def test_a_warning_again_after_an_hour() -> None:
    transform = limit(max_series=1)
    t = 20 * HOUR_NS
    transform.apply(window(t, {"x": ["a", "b"]}))
    transform._warned = {"x": t}  # (documented state) the first warning was at t
    assert transform.apply(window(t + HOUR_NS - 1, {"x": ["a", "b"]})).point_count() == 1
    assert transform._warned == {"x": t}, "no second warning within the hour"
    transform.apply(window(t + HOUR_NS, {"x": ["a", "b"]}))
    assert transform._warned == {"x": t + HOUR_NS}


def test_max_series_counts_across_families() -> None:
    transform = limit(max_series=3)
    out = transform.apply(window(HOUR_NS, {"a": ["1", "2"], "b": ["1", "2"], "c": ["1"]}))
    assert kept(out) == {"a": ["1", "2"], "b": ["1"]}


def test_idle_series_age_out_and_make_room() -> None:
    transform = limit(max_series_per_family=1)
    t = 30 * HOUR_NS
    assert kept(transform.apply(window(t, {"m": ["old", "new"]}))) == {"m": ["old"]}
    later = t + 2 * HOUR_NS  # past series.idle_seconds (3600 s): "old" was not seen since
    assert kept(transform.apply(window(later, {"m": ["new"]}))) == {"m": ["new"]}
    assert kept(transform.apply(window(later + 60 * NS_PER_S, {"m": ["old", "new"]}))) == {"m": ["new"]}


def test_a_limit_needs_a_bound() -> None:
    with pytest.raises(ConfigError) as error:
        limit()
    assert any(p.startswith("transforms[0]") and "max_series_per_family" in p for p in error.value.problems)


def test_a_sink_limit_counts_under_the_sink_name_in_metrics() -> None:
    config = parse_config(
        {
            "sources": {"f": {"type": "file", "path": "x"}},
            "sinks": {"narrow": {"type": "console", "transforms": [{"type": "limit", "max_series_per_family": 1}]}},
        }
    )
    pipeline = Pipeline(config)
    pipeline.prepare_all([window(40 * HOUR_NS, {"m": ["a", "b", "c"]})])
    exposed = generate_latest(telemetry.REGISTRY).decode()
    assert 'bridge_dropped_points_total{reason="cardinality",sink="narrow"} 2.0' in exposed


def test_once_dry_run_reports_series_per_family_and_what_a_limit_cuts(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    fixture = CEREBRAS_FIXTURES / "two-endpoints-mixed-labels.prom"
    config.write_text(
        f"sources:\n  cb:\n    type: file\n    path: {fixture}\n    preset: cerebras\n"
        "transforms:\n  - type: limit\n    max_series_per_family: 4\n"
        "sinks:\n  out:\n    type: console\n"
    )
    result = cli("once", "-c", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("=== series per family")))
    per_family = dict(reversed(line.split()) for line in lines[start + 1 :] if not line.startswith("==="))
    assert int(per_family["ttft_seconds"]) == 10  # two endpoints x five statistics
    cut = next(line for line in lines if line.startswith("=== limit in transforms:"))
    assert "ttft_seconds (6 series dropped)" in cut
    assert "inference_endpoint_status" not in cut  # two series: under the limit
