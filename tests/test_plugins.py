"""A third-party sink, installed as a distribution with an entry point, used from YAML."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import CEREBRAS_FIXTURES

PLUGIN = '''
"""A tiny third-party sink: writes `name value` lines to a file."""
from pydantic import Field

from bridge.schema import SinkConfig
from bridge.sinks.base import Payload, Sink


class LinesConfig(SinkConfig):
    path: str = Field(description="where to write")


class LinesSink(Sink):
    Config = LinesConfig

    def prepare(self, batch):
        body = "".join(f"{m.name} {p.value}\\n" for m, p in batch.iter_points())
        return [Payload(body.encode(), batch.window_end_ns, batch.point_count())]

    async def deliver(self, payload):
        with open(self.config.path, "ab") as f:
            f.write(payload.body)
'''


def install_plugin(site: Path) -> None:
    """Lay the plug-in out exactly as pip leaves an installed wheel: package + dist-info with entry_points.txt."""
    (site / "mb_lines_sink").mkdir(parents=True)
    (site / "mb_lines_sink" / "__init__.py").write_text(PLUGIN)
    dist = site / "mb_lines_sink-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mb-lines-sink\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[metrics_bridge.sinks]\nlines = mb_lines_sink:LinesSink\n")
    (dist / "RECORD").write_text("")


def test_an_entry_point_sink_is_used_by_type(tmp_path: Path) -> None:
    install_plugin(tmp_path / "site")
    out = tmp_path / "lines.txt"
    config = tmp_path / "bridge.yaml"
    config.write_text(
        textwrap.dedent(f"""
        sources:
          replay:
            type: file
            path: {CEREBRAS_FIXTURES / "single-endpoint-all-families.prom"}
            preset: cerebras
        sinks:
          mine:
            type: lines
            path: {out}
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "once", "-c", str(config)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert "requests_count_total 37.0" in lines
    assert "input_tokens_total 58904.0" in lines
    unknown = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "validate", "-c", str(config)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )  # without the plug-in on the path
    assert unknown.returncode == 1 and "sinks.mine.type: unknown sink type 'lines'" in unknown.stderr
