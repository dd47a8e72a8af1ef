"""`cerebras-grafana.json`: the Grafana dashboard, built with grafana-foundation-sdk's typed builders.

Every query is PromQL on the names Mimir stores for the OTLP path (README, "What a
Grafana user types in PromQL"); the ratios are the rules' own builders
(bridge.dashboards.promql), evaluated with the dashboard's variables.
"""

from __future__ import annotations

import itertools
import json

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from bridge.dashboards import promql
from bridge.dashboards.promql import PERCENTILES, Scope

UID = "metrics-bridge-cerebras"
TITLE = "Cerebras inference endpoints (metrics-bridge)"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
WINDOW = "$__rate_interval"
#: the panels' scope: the selected endpoints of the selected organizations, one series per endpoint
PANELS = Scope(matchers='endpoint=~"$endpoint"', by="endpoint", organization="$organization")
STATUS = {"1": ("up", "green"), "0": ("down", "red"), "-1": ("unknown", "orange")}
LATENCY_TITLES = {
    "ttft_seconds": "Time to first token",
    "tpot_seconds": "Time per output token",
    "e2e_latency_seconds": "End-to-end latency",
    "queue_time_seconds": "Queue time",
}


def _query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(DATASOURCE)


def _timeseries(title: str, unit: str, queries: list[tuple[str, str]], span: int = 8) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).span(span).height(8).datasource(DATASOURCE)
    for ref_id, (expr, legend) in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(_query(expr, legend, ref_id))
    return panel


def _variable(name: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(name)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def _status_panel() -> statetimeline.Panel:
    mappings: list[model.ValueMapping] = [
        model.ValueMap(
            options={
                value: model.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(STATUS.items())
            }
        )
    ]
    return (
        statetimeline.Panel()
        .title("Endpoint status")
        .span(24)
        .height(6)
        .datasource(DATASOURCE)
        .mappings(mappings)
        .with_target(_query(PANELS.gauge("inference_endpoint_status"), "{{endpoint}}"))
    )


def _bridge_panels() -> list[timeseries.Panel]:
    """The bridge's self-metrics (scraped from its /metrics): a counter with no increments yet shows 0, not nothing."""
    return [
        _timeseries(
            "Windows lost upstream (gaps)",
            "short",
            [
                (
                    f"sum by (instance, source) (increase(bridge_gaps_total[{WINDOW}])) "
                    "or sum by (instance, source) (bridge_scrapes_total) * 0",
                    "{{instance}} {{source}}",
                )
            ],
            span=6,
        ),
        _timeseries(
            "Send failures",
            "short",
            [
                (
                    f"sum by (instance, sink) (increase(bridge_send_failures_total[{WINDOW}])) "
                    "or sum by (instance, sink) (bridge_delivery_oldest_age_seconds) * 0",
                    "{{instance}} {{sink}}",
                )
            ],
            span=6,
        ),
        _timeseries(
            "Oldest waiting window",
            "s",
            [("max by (instance, sink) (bridge_delivery_oldest_age_seconds)", "{{instance}} {{sink}}")],
            span=6,
        ),
        _timeseries(
            "Since last success",
            "s",
            [
                (
                    "time() - max by (instance, sink) (bridge_last_send_success_timestamp_seconds)",
                    "send {{instance}} {{sink}}",
                ),
                (
                    "time() - max by (instance, source) (bridge_last_scrape_success_timestamp_seconds)",
                    "scrape {{instance}} {{source}}",
                ),
            ],
            span=6,
        ),
    ]


def build() -> dash.Dashboard:
    failures = Scope(PANELS.matchers, "endpoint, http_code", PANELS.organization)
    tokens = [
        (f"60 * {PANELS.rate(f'{kind}_tokens_total', WINDOW)}", f"{{{{endpoint}}}} {kind}")
        for kind in ("input", "output")
    ]
    rows: list[tuple[str, list[timeseries.Panel] | list[statetimeline.Panel]]] = [
        (
            "Traffic",
            [
                _timeseries(
                    "Requests per second", "reqps", [(PANELS.rate("requests_count_total", WINDOW), "{{endpoint}}")]
                ),
                _timeseries("Success ratio", "percentunit", [(promql.success_ratio(PANELS, WINDOW), "{{endpoint}}")]),
                _timeseries(
                    "Failures per second by HTTP code",
                    "reqps",
                    [(failures.rate("requests_failure_total", WINDOW), "{{endpoint}} {{http_code}}")],
                ),
            ],
        ),
        (
            "Tokens",
            [
                _timeseries("Tokens per minute", "short", tokens, span=12),
                _timeseries(
                    "Output tokens per request",
                    "short",
                    [(promql.output_tokens_per_request(PANELS, WINDOW), "{{endpoint}}")],
                    span=12,
                ),
            ],
        ),
        (
            "Latency",
            [
                _timeseries(
                    title,
                    "s",
                    [(PANELS.gauge(family, f'statistic="{p}"'), f"{{{{endpoint}}}} {p}") for p in PERCENTILES],
                    span=12,
                )
                for family, title in LATENCY_TITLES.items()
            ],
        ),
        ("Status", [_status_panel()]),
        (
            "Cache",
            [_timeseries("Prompt cache rate", "percentunit", [(PANELS.gauge("cache_rate"), "{{endpoint}}")], 24)],
        ),
        ("metrics-bridge", _bridge_panels()),
    ]
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["cerebras", "metrics-bridge"])
        .refresh("1m")
        .time("now-6h", "now")
        .with_variable(dash.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_variable("organization", "label_values(target_info, cerebras_organization_id)"))
        .with_variable(_variable("endpoint", "label_values(inference_endpoint_status, endpoint)"))
    )
    ids = itertools.count(1)
    for title, panels in rows:  # expanded rows: the row, then its panels at the top level
        board = board.with_row(dash.Row(title).collapsed(False).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    return board


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def expressions(document: str) -> list[str]:
    """Every PromQL expression of a rendered dashboard: its panels' targets and its query variables."""
    board = json.loads(document)
    targets = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return targets + [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
