"""Dashboards and alerts as code for the Cerebras families (`make dashboards`, `metrics-bridge dashboards`).

The generated files are committed under dashboards/ (plain files, so the Helm
chart and people can ship them as they are); a test fails when one differs from
what this package makes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def _grafana() -> str:
    from bridge.dashboards import grafana  # grafana-foundation-sdk: the `dashboards` extra

    return grafana.render()


def _rules() -> str:
    from bridge.dashboards import rules

    return rules.render()


def _datadog_dashboard() -> str:
    from bridge.dashboards import datadog

    return datadog.render_dashboard()


def _datadog_monitors() -> str:
    from bridge.dashboards import datadog

    return datadog.render_monitors()


#: file name -> what renders it
FILES: dict[str, Callable[[], str]] = {
    "cerebras-grafana.json": _grafana,
    "cerebras-rules.yaml": _rules,
    "cerebras-datadog-dashboard.json": _datadog_dashboard,
    "cerebras-datadog-monitors.json": _datadog_monitors,
}


def export(target: str) -> str:
    """What `metrics-bridge dashboards export TARGET` prints: one document, as the backend's tools read it."""
    if target == "grafana":
        return _grafana()
    if target == "prometheus-rules":
        return _rules()
    if target == "datadog":  # both files in one JSON document: {"dashboard": ..., "monitors": [...]}
        both = {"dashboard": json.loads(_datadog_dashboard()), "monitors": json.loads(_datadog_monitors())}
        return json.dumps(both, indent=2) + "\n"
    raise ValueError(f"unknown target {target!r}: grafana, prometheus-rules or datadog")


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in FILES.items():
        path = directory / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m bridge.dashboards [DIR]`: regenerate every file (default: dashboards/)."""
    args = sys.argv[1:] if argv is None else argv
    for path in write(Path(args[0] if args else "dashboards")):
        print(path)
    return 0
