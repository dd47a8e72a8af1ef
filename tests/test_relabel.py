"""The `relabel` transform, held to Prometheus itself.

The differential test serves one exposition from a loopback server; Debian's
Prometheus scrapes it once per row of RULES (one scrape job per row, the row as
its `metric_relabel_configs`), and the series it stores (read back through
/api/v1/series) must be the series the transform makes of the same exposition
(read by the `file` source), row for row, minus the `job` and `instance` labels
Prometheus adds. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.config import ConfigError, parse_config
from bridge.context import Context
from bridge.model import Batch, Kind, Metric, Point, Temporality
from bridge.pipeline import build_transforms
from bridge.sources.file import FileSource
from bridge.transforms.relabel import Relabel, exposed_name
from tests.conftest import run
from tests.prometheus_server import PROMETHEUS, running_prometheus
from tests.servers import ExpositionServer, Response

EXPOSITION = """\
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200",path="/api/v1/users",tenant="Acme"} 10
http_requests_total{method="POST",code="500",path="/api/v2/orders",tenant="globex"} 3
http_requests_total{method="GET",code="404",path="/static/app.js",tenant="Initech"} 7
# TYPE node_temp_celsius gauge
node_temp_celsius{sensor="cpu0",zone="a",host="web-1"} 45
node_temp_celsius{sensor="cpu1",zone="b",host="web-2"} 51
node_temp_celsius{sensor="gpu0",zone="a",host="db-1",copy_of="a"} 60
# TYPE queue_depth gauge
queue_depth{queue="emails",shard="3",region="eu-west-1"} 12
queue_depth{queue="SMS",shard="17",region="us-east-2"} 4
queue_depth{queue="Ünïcode",shard="0",region="ap-south-1"} 1
"""

Rules = list[dict[str, Any]]
RULES: dict[str, Rules] = {
    "replace_joined": [{"source_labels": ["method", "code"], "separator": "_", "target_label": "mc"}],
    "replace_named_groups": [
        {
            "source_labels": ["path"],
            "regex": r"/api/(?P<version>v\d+)/(?P<res>\w+)",
            "target_label": "endpoint",
            "replacement": "${res}_$version",
        }
    ],
    "replace_target_from_group": [
        {"source_labels": ["sensor"], "regex": "([a-z]+)([0-9])", "target_label": "${1}_idx", "replacement": "$2"}
    ],
    "replace_go_expand_rules": [
        {"source_labels": ["queue"], "regex": "(?i)(sms|EMAILS)", "target_label": "q", "replacement": "$$_$1x-${1}y"}
    ],
    "replace_empty_deletes": [{"source_labels": ["zone"], "regex": "a", "target_label": "host", "replacement": ""}],
    "replace_no_match_keeps": [{"source_labels": ["region"], "regex": "ap-.*", "target_label": "r"}],
    "replace_constant_from_nothing": [
        {"source_labels": ["nonexistent"], "target_label": "static_label", "replacement": "fixed"}
    ],
    "rename_keeps_kind": [
        {"source_labels": ["__name__"], "regex": "node_(.*)", "target_label": "__name__", "replacement": "host_$1"}
    ],
    "keep": [
        {"action": "keep", "source_labels": ["__name__", "method"], "regex": "http_requests_total;GET|queue_depth;"}
    ],
    "drop": [{"action": "Drop", "source_labels": ["code"], "regex": "5.."}],
    "keepequal": [{"action": "keepequal", "source_labels": ["zone"], "target_label": "copy_of"}],
    "dropequal": [{"action": "dropequal", "source_labels": ["zone"], "target_label": "copy_of"}],
    "hashmod": [{"action": "hashmod", "source_labels": ["host", "sensor"], "modulus": 8, "target_label": "h"}],
    "hashmod_wide": [
        {
            "action": "hashmod",
            "source_labels": ["__name__", "queue", "path"],
            "separator": "|",
            "modulus": 1000003,
            "target_label": "h",
        }
    ],
    "hashmod_of_nothing": [{"action": "hashmod", "source_labels": ["absent"], "modulus": 7, "target_label": "h"}],
    "labelmap": [{"action": "labelmap", "regex": "(se|zo)(.*)", "replacement": "meta_${1}_$2"}],
    "labeldrop": [{"action": "labeldrop", "regex": "tenant|re.*"}],
    "labelkeep": [{"action": "labelkeep", "regex": "__name__|job|instance|queue|sensor|method"}],
    "lowercase": [
        {"action": "lowercase", "source_labels": ["tenant", "queue"], "separator": "-", "target_label": "lo"}
    ],
    "uppercase": [{"action": "uppercase", "source_labels": ["method", "queue"], "target_label": "UP"}],
    "chain_with_temporary_label": [
        {"source_labels": ["path"], "regex": "/([^/]+)/.*", "target_label": "__tmp_root"},
        {"action": "drop", "source_labels": ["__tmp_root"], "regex": "static"},
        {"action": "labeldrop", "regex": "__tmp_.*"},
    ],
    "posix_class_and_alternation": [
        {"source_labels": ["host"], "regex": "([[:alpha:]]+)-[[:digit:]]+|(x)", "target_label": "role"}
    ],
}
#: Series Prometheus makes for every scrape, whatever the relabelling.
SCRAPE_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

SeriesSet = set[tuple[str, frozenset[tuple[str, str]]]]


def as_written_here(rules: Rules) -> Rules:
    """The rules as a bridge config spells them: `${` is interpolation there, so Go's `${1}` is written `$${1}`."""
    return yaml.safe_load(yaml.safe_dump(rules).replace("${", "$${"))  # type: ignore[no-any-return]


def relabel(rules: Rules) -> Relabel:
    config = parse_config(
        {
            "sources": {"f": {"type": "file", "path": "x"}},
            "sinks": {"c": {"type": "console"}},
            "transforms": [{"type": "relabel", "configs": as_written_here(rules)}],
        }
    )
    (transform,) = build_transforms(config.transforms)
    assert isinstance(transform, Relabel)
    return transform


def emitted(batch: Batch) -> SeriesSet:
    """The series as Prometheus names them (a counter's samples end in `_total`)."""
    return {(exposed_name(m), frozenset(s.attributes)) for m in batch.metrics for s in m.series}


def read_exposition(tmp_path: Path) -> Batch:
    path = tmp_path / "exposition.prom"
    path.write_text(EXPOSITION)
    config = parse_config({"sources": {"f": {"type": "file", "path": str(path)}}, "sinks": {"c": {"type": "console"}}})
    source = FileSource("f", config.sources["f"], Context())

    async def read() -> Batch:
        await source.start()
        try:
            batch = await source.collect(time.time())
        finally:
            await source.close()
        assert batch is not None
        return batch

    return run(read())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def prometheus_series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SeriesSet]]:
    """What Prometheus stores for each row: one job per row on one exposition server. Both stopped at the end."""
    if not PROMETHEUS.exists() and not os.environ.get("CI"):
        pytest.skip("needs Debian's prometheus at /usr/bin/prometheus: run scripts/ci-deps.sh")
    workdir = tmp_path_factory.mktemp("prometheus-relabel")
    server = ExpositionServer()
    server.respond(Response(body=EXPOSITION))
    server.start()
    host, port = server.server_address
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": row, "static_configs": [{"targets": [f"{host}:{port}"]}], "metric_relabel_configs": rules}
            for row, rules in RULES.items()
        ],
    }
    try:
        with running_prometheus(workdir, yaml.safe_dump(config), ready=_all_scraped) as url:
            yield {row: _stored(url, row) for row in RULES}
    finally:
        server.stop()


def _all_scraped(url: str) -> bool:
    """Every job's `up` is 1: its scrape, relabelled samples included, is committed."""
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "up == 1"}, timeout=5)
    except httpx.TransportError:
        return False
    if answer.status_code != 200:
        return False
    return {r["metric"]["job"] for r in answer.json()["data"]["result"]} == set(RULES)


def _stored(url: str, job: str) -> SeriesSet:
    answer = httpx.get(f"{url}/api/v1/series", params={"match[]": f'{{job="{job}"}}'}, timeout=10)
    assert answer.status_code == 200, answer.text
    out: SeriesSet = set()
    for labels in answer.json()["data"]:
        name = labels.pop("__name__")
        if name in SCRAPE_SERIES:
            continue
        labels.pop("job"), labels.pop("instance")
        out.add((name, frozenset(labels.items())))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("row", list(RULES))
def test_relabel_agrees_with_prometheus(row: str, prometheus_series: dict[str, SeriesSet], tmp_path: Path) -> None:
    ours = emitted(relabel(RULES[row]).apply(read_exposition(tmp_path)))
    assert ours == prometheus_series[row]


def test_every_action_is_in_the_differential_table() -> None:
    actions = {rule.get("action", "replace").lower() for rules in RULES.values() for rule in rules}
    assert actions == {
        "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
        "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
    }  # fmt: skip
    assert len(RULES) >= 15


def gauge_batch() -> Batch:
    return Batch(
        "src",
        (),
        0,
        60,
        [
            Metric(
                "jobs_total",
                Kind.COUNTER,
                [Point((("queue", "a"),), 1.0, 0, 60), Point((("queue", "b"),), 2.0, 0, 60)],
                temporality=Temporality.DELTA,
                unit="{job}",
            ),
            Metric("jobs_running", Kind.GAUGE, [Point((("queue", "a"),), 3.0, 0, 60)]),
        ],
    )


def test_hashmod_is_md5_last_eight_bytes_big_endian() -> None:
    out = relabel([{"action": "hashmod", "source_labels": ["queue"], "modulus": 1000, "target_label": "h"}]).apply(
        gauge_batch()
    )
    expected = int.from_bytes(hashlib.md5(b"a").digest()[8:], "big") % 1000
    assert dict(out.metrics[0].series[0].attributes)["h"] == str(expected)


def test_a_renamed_series_keeps_kind_temporality_and_unit_and_joins_its_new_name() -> None:
    rules = [
        {"source_labels": ["__name__", "queue"], "regex": "jobs_total;b", "target_label": "__name__",
         "replacement": "jobs_b_total"},
    ]  # fmt: skip
    out = relabel(rules).apply(gauge_batch())
    metrics = {m.name: m for m in out.metrics}
    renamed = metrics["jobs_b_total"]
    assert (renamed.kind, renamed.temporality, renamed.unit) == (Kind.COUNTER, Temporality.DELTA, "{job}")
    assert renamed.values == [2.0] and metrics["jobs_total"].values == [1.0]
    assert metrics["jobs_running"].kind is Kind.GAUGE


def test_two_series_merged_into_one_keep_the_first_point() -> None:
    out = relabel([{"action": "labeldrop", "regex": "queue"}]).apply(gauge_batch())
    assert {m.name: m.values for m in out.metrics} == {"jobs_total": [1.0], "jobs_running": [3.0]}


def test_the_outcome_is_computed_once_per_series() -> None:
    transform = relabel([{"action": "drop", "source_labels": ["queue"], "regex": "b"}])
    batch = gauge_batch()
    calls = 0
    rule = transform.rules[0]
    original = rule.apply

    def counting(labels: dict[str, str]) -> bool:
        nonlocal calls
        calls += 1
        return bool(original(labels))

    rule.apply = counting
    first = transform.apply(batch)
    second = transform.apply(batch)
    assert calls == 3, "one evaluation per series, not per batch"
    assert emitted(first) == emitted(second) == {("jobs_total", frozenset({("queue", "a")})),
                                                 ("jobs_running", frozenset({("queue", "a")}))}  # fmt: skip
    assert first.metrics[0].series[0] is second.metrics[0].series[0], "the twin is interned once"


def test_input_is_untouched() -> None:
    batch = gauge_batch()
    relabel([{"action": "labeldrop", "regex": "queue"}]).apply(batch)
    assert [m.points[0].attributes for m in batch.metrics] == [(("queue", "a"),), (("queue", "a"),)]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"regex": "(a)\\1"}, "transforms[0].configs[0].regex: "),
        ({"regex": "(?=a)b"}, "lookahead"),
        ({"regex": "(?<!a)b"}, "lookbehind"),
        ({"regex": "a++"}, "possessive"),
        ({"regex": "(?>a)"}, "atomic group"),
        ({"regex": "a\\Z"}, "\\Z"),
        ({"regex": "(?U)a"}, "flag group"),
        ({"regex": "[[:word_char:]]"}, "[:word_char:]"),
        ({"regex": "a{1001}"}, "over 1000"),
        ({"regex": "\\pL"}, "bad escape"),
        ({"action": "hashmod", "target_label": "h"}, "non-zero modulus"),
        ({"action": "replace", "target_label": ""}, "requires target_label"),
        ({"action": "replace", "target_label": "bad-name"}, "not a valid target_label"),
        ({"action": "lowercase", "target_label": "x", "replacement": "y"}, "replacement cannot be set"),
        ({"action": "keepequal", "target_label": "x", "regex": "y"}, "takes only source_labels and target_label"),
        ({"action": "labeldrop", "regex": "x", "source_labels": ["a"]}, "takes only regex"),
        ({"action": "labelmap", "replacement": "$"}, "not a valid replacement"),
        ({"action": "rewrite"}, "transforms[0].configs[0].action"),
    ],
)
def test_what_prometheus_refuses_is_refused_with_its_path(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        relabel([{"target_label": "t", **rule}] if "target_label" not in rule and "action" not in rule else [rule])
    assert any(problem in p and p.startswith("transforms[0].configs[0]") for p in error.value.problems), (
        error.value.problems
    )


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("foo$", "foo\n", False),  # RE2's $ is the very end
        ("a.b", "a\nb", True),  # Prometheus anchors as ^(?s:...)$
        ("\\d+", "١٢", False),  # RE2's \d is ASCII
        ("[[:upper:]]+", "ABC", True),
        ("(?i)abc|x", "X", True),  # the flag holds across the alternation, as in RE2
        ("x{,2}", "x{,2}", True),  # not a repeat in RE2: literal
        ("\\s", "\v", False),  # RE2's \s has no \v
    ],
)
def test_re2_forms_match_as_in_re2(pattern: str, text: str, matches: bool) -> None:
    transform = relabel([{"action": "keep", "source_labels": ["queue"], "regex": pattern}])
    batch = Batch("s", (), 0, 60, [Metric("m", Kind.GAUGE, [Point((("queue", text),), 1.0, 0, 60)])])
    assert bool(transform.apply(batch).metrics) is matches
