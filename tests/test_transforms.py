"""Transforms are pure: they return new batches and leave the input untouched."""

from __future__ import annotations

from bridge.config import parse_config
from bridge.model import Batch, Kind, Metric, Point
from bridge.pipeline import apply_transforms, build_transforms


def batch() -> Batch:
    return Batch(
        "src",
        (("bridge.source", "src"),),
        0,
        60,
        [
            Metric(
                "requests_count_total",
                Kind.COUNTER,
                [Point((("endpoint", "a"),), 1.0, 0, 60), Point((("endpoint", "b-idle"),), 0.0, 0, 60)],
            ),
            Metric("ttft_seconds", Kind.GAUGE, [Point((("endpoint", "a"), ("statistic", "p95")), 0.4, 0, 60)]),
        ],
    )


def transforms(*configs: dict) -> list:
    config = parse_config(
        {
            "sources": {"f": {"type": "file", "path": "x"}},
            "sinks": {"c": {"type": "console"}},
            "transforms": list(configs),
        }
    )
    return build_transforms(config.transforms)


def test_filter_by_name_and_labels() -> None:
    original = batch()
    out = apply_transforms(
        transforms({"type": "filter", "drop_names": ["ttft_.*"], "drop_points": {"endpoint": ".*-idle"}}), original
    )
    assert [m.name for m in out.metrics] == ["requests_count_total"]
    assert [dict(p.attributes)["endpoint"] for p in out.metrics[0].points] == ["a"]
    assert len(original.metrics) == 2 and len(original.metrics[0].points) == 2, "input untouched"


def test_filter_keep_points_matches_missing_labels_as_empty() -> None:
    out = apply_transforms(transforms({"type": "filter", "keep_points": {"statistic": "p9.|"}}), batch())
    assert sum(len(m.points) for m in out.metrics) == 3


def test_rename_map_then_prefix() -> None:
    out = apply_transforms(
        transforms({"type": "rename", "names": {"ttft_seconds": "time_to_first_token_seconds"}, "prefix": "cerebras_"}),
        batch(),
    )
    assert [m.name for m in out.metrics] == ["cerebras_requests_count_total", "cerebras_time_to_first_token_seconds"]


def test_labels_add_drop_rename_and_resource() -> None:
    original = batch()
    out = apply_transforms(
        transforms(
            {
                "type": "labels",
                "add": {"env": "prod"},
                "drop": ["statistic"],
                "rename": {"endpoint": "model"},
                "add_resource": {"team": "ml"},
            }
        ),
        original,
    )
    assert out.metrics[1].points[0].attributes == (("env", "prod"), ("model", "a"))
    assert ("team", "ml") in out.resource and ("team", "ml") not in original.resource
    assert original.metrics[1].points[0].attributes == (("endpoint", "a"), ("statistic", "p95"))
