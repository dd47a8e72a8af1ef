"""What a person reads: the console table keeps one point per line, the start-up log line stays short."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import yaml

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
                "sinks": {"table": {"type": "console"}},
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
