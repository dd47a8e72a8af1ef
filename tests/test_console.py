"""What a person reads: the summary row per endpoint, the points table one point per line, a short start-up line."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S, Batch
from bridge.simulator import CerebrasSimulator, EndpointValues
from bridge.sinks.console import ConsoleSink, render_table
from bridge.sources.file import FileSource
from tests.conftest import FIXTURES, T0, run
from tests.test_cerebras_source import collect_at, make_source
from tests.test_hostile_sources import start_cli, stop_cli, wait_for_line

# Label values with an escaped newline (`\n` in the exposition) and raw controls: a tab, BEL,
# DEL, NEL (U+0085), LINE SEPARATOR (U+2028) and a carriage return inside the quotes.
EXPOSITION = (
    "# TYPE deploy_info gauge\n"
    'deploy_info{endpoint="ep\\none",note="first\\nsecond"} 101\n'
    'deploy_info{endpoint="ep-two",note="tab\tbell\x07del\x7f"} 102\n'
    'deploy_info{endpoint="ep-three",note="nel\x85ls\u2028cr\rend"} 103\n'
    'deploy_info{endpoint="ep-four",note="plain café"} 104\n'
)

# (value, endpoint cell, labels cell) as the table must print them.
EXPECTED_ROWS = [
    ("101", "ep\\none", "note=first\\nsecond"),
    ("102", "ep-two", "note=tab\\tbell\\x07del\\x7f"),
    ("103", "ep-three", "note=nel\\x85ls\\u2028cr\\rend"),
    ("104", "ep-four", "note=plain café"),
]


def test_control_characters_in_label_values_are_escaped_one_point_per_line(tmp_path: Path) -> None:
    exposition = tmp_path / "odd.prom"
    exposition.write_bytes(EXPOSITION.encode())
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": {"dump": {"type": "file", "path": str(exposition), "resource": {"team": "ml\nops"}}},
                "sinks": {"table": {"type": "console", "layout": "points"}},
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "once", "-c", str(config)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    stdout = result.stdout.decode()
    assert not [c for c in stdout if c != "\n" and unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    lines = [line for line in stdout.splitlines() if line]  # splitlines: every break a terminal would make
    assert lines[0].startswith("── dump · window ") and lines[0].endswith(" · 4 points · team=ml\\nops")
    assert lines[1].split() == ["metric", "kind", "endpoint", "statistic", "value", "labels"]
    assert [line.split(maxsplit=4) for line in lines[2:]] == [
        ["deploy_info", "gauge", endpoint, value, labels] for value, endpoint, labels in EXPECTED_ROWS
    ]


def test_the_start_up_line_counts_sources_and_names_a_few(tmp_path: Path) -> None:
    exposition = tmp_path / "small.prom"
    exposition.write_text("up 1\n")
    config = {
        "sources": {f"s{i:02d}": {"type": "file", "path": str(exposition)} for i in range(50)},
        "sinks": {"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
    }
    process = start_cli(config, tmp_path)
    try:
        line = wait_for_line(process, "running", timeout=60)[-1].rstrip("\n")
    finally:
        _, log = stop_cli(process, within=30)
    assert process.returncode == 0, log[-2000:]
    assert line.endswith(f"running {tmp_path / 'bridge.yaml'}: 50 sources (s00, s01, s02, ... 47 more) -> 1 sink (out)")
    assert len(line) < 200 + len(str(tmp_path)), line


def console(**options: Any) -> ConsoleSink:
    config = parse_config(
        {"sources": {"f": {"type": "file", "path": "x"}}, "sinks": {"c": {"type": "console", **options}}}
    )
    return ConsoleSink("c", config.sinks["c"], Context())


def simulator_windows(simulator: CerebrasSimulator, clock: ManualClock, count: int) -> list[Batch]:
    """`count` consecutive minute windows, scraped from the simulator as the cerebras source does."""

    async def go() -> list[Batch]:
        source = make_source(simulator, clock)
        await source.start()
        try:
            return [await collect_at(source, clock, T0 + 65 + 60 * i) for i in range(count)]
        finally:
            await source.close()

    batches = run(go())
    assert all(batches)
    return batches  # type: ignore[no-any-return]


def read_file(path: Path, **options: Any) -> Batch:
    config = parse_config(
        {"sources": {"f": {"type": "file", "path": str(path), **options}}, "sinks": {"c": {"type": "console"}}}
    )
    source = FileSource("f", config.sources["f"], Context())

    async def go() -> Batch | None:
        await source.start()
        try:
            return await source.collect(T0 + 5)
        finally:
            await source.close()

    batch = run(go())
    assert batch is not None
    return batch  # type: ignore[no-any-return]


def shown(sink: ConsoleSink, batch: Batch) -> str:
    (payload,) = sink.prepare(batch)
    return payload.body.decode()


def summary_rows(text: str) -> dict[str, list[str]]:
    """endpoint -> its cells; the header must be the summary's."""
    lines = [line for line in text.splitlines() if line]
    assert re.split(r"\s{2,}", lines[1]) == [
        "endpoint", "status", "requests", "success", "failures", "tokens in/out", "TTFT p50/p95", "e2e p95"
    ]  # fmt: skip
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}


def number(cell: str) -> float:
    """A compact cell read back: 2.82M, 81.4k, 132ms, 1.89s, 1,279."""
    value, suffix = re.fullmatch(r"([\d.,]+)(k|M|G|ms|s)?", cell).groups()  # type: ignore[union-attr]
    return float(value.replace(",", "")) * {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "ms": 1e-3, "s": 1}[suffix]


def expected_cells(values: EndpointValues) -> tuple[str, str, float, float, float, float, float]:
    """status, success %, failures, tokens in, tokens out, TTFT p50, TTFT p95 as the simulator made them."""
    success = f"{100 * values.success / values.requests:.1f}%" if values.requests else "-"
    ttft = values.statistics.get("ttft_seconds", {})
    return (
        "up" if values.status == 1 else "DOWN",
        success,
        sum(values.failures.values()),
        values.input_tokens,
        values.output_tokens,
        ttft.get("p50", math.nan),
        ttft.get("p95", math.nan),
    )


def test_summary_is_one_row_per_endpoint_with_the_simulators_numbers_and_their_change(
    simulator: CerebrasSimulator, clock: ManualClock
) -> None:
    first, second = simulator_windows(simulator, clock, 2)
    sink = console()
    texts = [shown(sink, first), shown(sink, second)]
    assert texts[1].startswith("── cb · 2027-01-15 08:01:00 → 08:02:00 UTC · 3 endpoints · ")
    previous = simulator.window_values(T0).endpoints
    for text, window in zip(texts, (T0, T0 + 60), strict=True):
        assert max(map(len, text.splitlines())) <= 100, text
        rows = summary_rows(text)
        endpoints = simulator.window_values(window).endpoints
        assert list(rows) == list(endpoints)
        for name, values in endpoints.items():
            status, requests, success, failures, tokens, ttft, e2e = rows[name]
            want = expected_cells(values)
            change = "" if window == T0 else f" ({values.requests - previous[name].requests:+,})"
            failed = sum(values.failures.values())
            failed_change = "" if window == T0 else f" ({failed - sum(previous[name].failures.values()):+,})"
            assert (status, requests, success, failures) == (
                want[0], f"{values.requests:,}{change}", want[1], f"{failed:,}{failed_change}"
            )  # fmt: skip
            tokens_in, tokens_out = map(number, tokens.split(" / "))
            assert (tokens_in, tokens_out) == (pytest.approx(want[3], rel=5e-3), pytest.approx(want[4], rel=5e-3))
            if values.requests:
                p50, p95 = map(number, ttft.split(" / "))
                assert (p50, p95) == (pytest.approx(want[5], rel=5e-3), pytest.approx(want[6], rel=5e-3))
                assert number(e2e) == pytest.approx(values.statistics["e2e_latency_seconds"]["p95"], rel=5e-3)
            else:  # the idle endpoint: NaN statistics
                assert (ttft, e2e) == ("- / -", "-")
    assert "acme-idle-8b" in texts[1] and summary_rows(texts[1])["acme-idle-8b"][1] == "0 (+0)"


def test_summary_of_a_saved_payload_shows_down_unknown_and_nan_as_dashes() -> None:
    batch = read_file(FIXTURES / "cerebras" / "idle-down-unknown.prom", preset="cerebras")
    rows = summary_rows(shown(console(), batch))
    assert rows == {
        "northwind-phi-4-mini": ["up", "0", "-", "0", "0 / 0", "- / -", "-"],
        "northwind-deepseek-r1-70b": ["DOWN", "0", "-", "0", "0 / 0", "- / -", "-"],
        "northwind-gemma-3-27b": ["unknown", "0", "-", "0", "0 / 0", "- / -", "-"],
    }


def test_an_endpoint_absent_for_an_hour_loses_its_previous_window(
    simulator: CerebrasSimulator, clock: ManualClock
) -> None:
    first, second = simulator_windows(simulator, clock, 2)
    hour = 3600 * NS_PER_S
    late = dataclasses.replace(
        second, window_start_ns=second.window_start_ns + hour, window_end_ns=first.window_end_ns + hour
    )
    sink = console()
    shown(sink, first)
    assert "(" not in summary_rows(shown(sink, late))["acme-llama-3.3-70b"][1]  # an hour on: no change
    only_llama = late.with_metrics([m.take(
        [i for i, s in enumerate(m.series) if dict(s.attributes).get("endpoint") == "acme-llama-3.3-70b"]
    ) for m in late.metrics])  # fmt: skip
    later = dataclasses.replace(only_llama, window_end_ns=late.window_end_ns + hour + NS_PER_S)
    shown(sink, later)
    assert set(sink.previous["cb"]) == {"acme-llama-3.3-70b"}  # the others were absent for over an hour


def test_a_source_without_the_cerebras_families_prints_the_points_table(tmp_path: Path) -> None:
    exposition = tmp_path / "exporter.prom"
    exposition.write_text(EXPOSITION)
    batch = read_file(exposition)
    text = shown(console(), batch)
    assert text == render_table(batch, 500) == shown(console(layout="points"), batch)
    assert " · 4 points" in text.splitlines()[0]


def test_layout_points_keeps_one_row_per_point(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    (batch,) = simulator_windows(simulator, clock, 1)
    lines = shown(console(layout="points"), batch).splitlines()
    assert lines[0].endswith(f" · {batch.point_count()} points · cerebras.organization_id=org_test")
    assert lines[1].split() == ["metric", "kind", "endpoint", "statistic", "value", "labels"]
    assert len([line for line in lines[2:] if line]) == batch.point_count()
    assert "requests_count_total       counter/delta  acme-llama-3.3-70b" in lines[5]


def test_once_on_the_embedded_default_prints_the_summary() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "once"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = summary_rows(result.stdout)
    assert list(rows) == ["acme-llama-3.3-70b", "acme-qwen-3-32b", "acme-idle-8b"]
    assert rows["acme-idle-8b"][-2:] == ["- / -", "-"]
    assert max(map(len, result.stdout.splitlines())) <= 100
