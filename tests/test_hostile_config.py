"""Hostile configs never take the bridge down: `validate` answers for `run`, and a failed reload changes nothing.

Everything runs as users run it: the real CLI in a subprocess, real files (FIFOs,
devices, certificates made by openssl), real loopback servers, a real plug-in
installed with an entry point. Each `validate` must answer within its timeout:
before these fixes, several of these inputs hung it or printed a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import MAX_VALUES, ConfigError, parse_config
from tests.conftest import wait_for
from tests.receivers.datadog_intake import DatadogIntake
from tests.servers import ExpositionServer, Response

CLI = [sys.executable, "-m", "bridge.cli"]
#: `python -c` stand-in for the CLI on a PyYAML without libyaml (the pure-Python loader)
PURE_PYTHON_YAML_CLI = [
    sys.executable,
    "-c",
    "import sys, yaml; del yaml.CSafeLoader; from bridge import cli; sys.exit(cli.main())",
]
SINKS = "sinks:\n  out:\n    type: console\n"


def validate(
    config: Path, *, cli: list[str] = CLI, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`metrics-bridge validate -c config`; a hang fails the test (and the child is killed) after 30 s."""
    return subprocess.run(
        [*cli, "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 1, the usual answer, each expected problem, and no traceback."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("invalid configuration:\n"), result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def billion_laughs(levels: int = 9) -> str:
    """a0 holds 9 strings, a1 nine a0s, ... a{levels}: 9**(levels + 1) strings once expanded.

    A few hundred bytes of YAML.
    """
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


# ---------------------------------------------------------------- item 16: loading is bounded
def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(
        textwrap.dedent("""\
        sources:
          s:
            type: file
            path: /metrics.prom
            resource: &bomb
        """)
        + textwrap.indent(billion_laughs(), "      ")
        + "\n"
        + SINKS
    )
    refused(validate(config), f"more than {MAX_VALUES:,} values once YAML aliases are expanded")


def test_aliases_still_share_settings(tmp_path: Path) -> None:
    """Memoizing nodes by identity must not change what an ordinary alias means."""
    config = tmp_path / "shared.yaml"
    config.write_text(
        textwrap.dedent("""\
        sources:
          a: &common {type: file, path: /a.prom, resource: &team {team: platform}}
          b: {<<: *common, path: /b.prom}
          c: {type: file, path: /c.prom, resource: *team}
        """)
        + SINKS
    )
    result = validate(config)
    assert result.returncode == 0, result.stderr
    assert "ok (3 source(s): a, b, c; 1 sink(s): out)" in result.stdout


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("fifo", "is a FIFO, not a regular file"),  # reading one blocks until a writer comes
        ("/dev/zero", "is a device, not a regular file"),  # never ends
        ("directory", "is a directory, not a regular file"),
        ("large", "is larger than 64 KiB"),
        ("latin1", "is not UTF-8 text"),
    ],
)
def test_file_interpolation_reads_only_small_regular_text_files(
    tmp_path: Path, fifo: Path, target: str, reason: str
) -> None:
    (tmp_path / "large").write_text("k" * (64 * 1024 + 1))
    (tmp_path / "latin1").write_bytes("caf\xe9-token".encode("latin-1"))
    path = {
        "fifo": str(fifo),
        "directory": str(tmp_path),
        "large": str(tmp_path / "large"),
        "latin1": str(tmp_path / "latin1"),
    }.get(target, target)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"sources:\n  p:\n    type: prometheus\n    url: http://127.0.0.1:9/metrics\n"
        f"    auth: {{type: bearer, token: '${{file:{path}}}'}}\n" + SINKS
    )
    refused(validate(config), "sources.p.auth.token: ", reason)


def test_a_config_file_that_is_not_a_regular_file_is_refused(fifo: Path) -> None:
    refused(validate(fifo), f"{fifo}: cannot read: is a FIFO, not a regular file")
    refused(validate(Path("/dev/zero")), "/dev/zero: cannot read: is a device, not a regular file")


@pytest.mark.parametrize(
    ("cli", "document", "expected"),
    [
        (CLI, "sources: " + "[" * 5000 + "]" * 5000, "invalid YAML: exceeded maximum nesting depth"),
        (PURE_PYTHON_YAML_CLI, "sources: " + "[" * 5000 + "]" * 5000, "invalid YAML: nested too deeply"),
        (
            CLI,
            "sources: {s: {type: file, path: /m, resource: " + "{a: " * 100 + "x" + "}" * 100 + "}}",
            "nested deeper than 64 levels",
        ),
        (
            CLI,
            "sources: {s: {type: file, path: /m, interval_seconds: " + "7" * 5000 + "}}",
            ":1:55: invalid YAML: not a valid int: Exceeds the limit (4300 digits)",
        ),
        (
            CLI,
            "sources: {s: {type: file, path: /m, resource: {since: 2001-02-30}}}",
            ":1:55: invalid YAML: not a valid timestamp: day is out of range for month",
        ),
        (
            CLI,
            "sources: {s: {type: file, path: /m, resource: {since: !!timestamp soon}}}",
            ":1:55: invalid YAML: not a valid timestamp: unreadable",
        ),
        (
            CLI,
            "sources: {s: &s {type: file, path: /m, resource: {self: *s}}}",
            "sources.s.resource.self: a YAML alias that contains itself",
        ),
        (CLI, 'sources: {s: {type: file, path: "/m\\0.prom"}}', "sources.s.path: contains a NUL character"),
    ],
    ids=[
        "deep-libyaml",
        "deep-pure-python",
        "deep-after-parsing",
        "5000-digits",
        "february-30",
        "bad-timestamp",
        "recursive-alias",
        "nul",
    ],
)
def test_unreadable_yaml_is_an_invalid_configuration(
    tmp_path: Path, cli: list[str], document: str, expected: str
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(document + "\n" + SINKS)
    refused(validate(config, cli=cli), expected)


def test_a_config_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(("sources:\n  s: {type: file, path: /caf\xe9.prom}\n" + SINKS).encode("latin-1"))
    refused(validate(config), f"{config}:2: not UTF-8 text (byte 0xe9)")


def test_at_most_a_hundred_problems_are_listed(tmp_path: Path) -> None:
    """Each problem is redacted against every registered secret: listing 100,000 of them took hours."""
    config = tmp_path / "typos.yaml"
    config.write_text(
        "sources:\n" + "".join(f"  s{i}: {{type: file, path: /m, intervall: 1}}\n" for i in range(500)) + SINKS
    )
    result = validate(config)
    refused(
        result, "sources.s0.intervall: unknown key", "sources.s99.intervall: unknown key", "... and 400 more problems"
    )
    assert "sources.s100.intervall" not in result.stderr


# ---------------------------------------------------------------- item 17: validate answers for run
def test_validate_and_run_refuse_what_would_fail_at_build(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        sources:
          p:
            type: prometheus
            url: https://127.0.0.1:9/metrics
            tls: {{ca_file: {tmp_path}/absent-ca.pem}}
            families: [{{match: "requests_(total"}}]
        transforms:
          - {{type: filter, drop_names: ["*_bucket"]}}
        sinks:
          out:
            type: otlp
            endpoint: https://127.0.0.1:4318
            certificate: {config}
          table:
            type: console
            transforms: [{{type: filter, keep_points: {{endpoint: "a{{2,1}}"}}}}]
        telemetry: {{listen: "999.1.1.1:9464"}}
        """)
    )
    expected = (
        f"sources.p.tls: ca_file {tmp_path}/absent-ca.pem: No such file or directory",
        "sources.p.families[0].match: not a valid regular expression: missing ), unterminated subpattern",
        "transforms[0].drop_names[0]: not a valid regular expression: nothing to repeat at position 0",
        f"sinks.out: certificate {config}: not usable PEM (no certificate or crl found)",
        "sinks.table.transforms[0].keep_points.endpoint: not a valid regular expression: min repeat greater than max",
        "telemetry.listen: '999.1.1.1:9464': '999.1.1.1' is not an IPv4 address",
    )
    refused(validate(config), *expected)
    run = subprocess.run([*CLI, "run", "-c", str(config)], capture_output=True, text=True, timeout=30, check=False)
    refused(run, *expected)  # the same answer, where run used to exit 2 naming no path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two self-signed certificates with their keys, and one whose key is encrypted, made by openssl."""
    directory = tmp_path_factory.mktemp("tls")
    for name, extra in (("one", ["-nodes"]), ("two", ["-nodes"]), ("locked", ["-passout", "pass:secret"])):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(directory / f"{name}.key"),
                "-out",
                str(directory / f"{name}.crt"),
                *extra,
            ],
            check=True,
            capture_output=True,
        )
    return directory


def source_tls(**tls: Any) -> dict[str, Any]:
    return {
        "sources": {"p": {"type": "prometheus", "url": "https://127.0.0.1:9/m", "tls": tls}},
        "sinks": {"out": {"type": "console"}},
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    return error.value.problems


def test_tls_files_are_loaded_as_the_scrape_will_load_them(certificates: Path) -> None:
    one, two, locked = (str(certificates / name) for name in ("one", "two", "locked"))
    parse_config(source_tls(ca_file=f"{one}.crt", cert_file=f"{one}.crt", key_file=f"{one}.key"))
    parse_config(source_tls(ca_file="/absent.pem", insecure_skip_verify=True))  # not verifying: the file is unused
    assert problems_of(source_tls(cert_file=f"{one}.crt", key_file=f"{two}.key")) == [
        f"sources.p.tls: cert_file {one}.crt with key_file {two}.key: not usable PEM (key values mismatch)"
    ]
    assert problems_of(source_tls(cert_file=f"{locked}.crt", key_file=f"{locked}.key")) == [
        f"sources.p.tls: cert_file {locked}.crt with key_file {locked}.key: is encrypted: "
        "the bridge needs an unencrypted key"
    ]
    assert problems_of(source_tls(key_file=f"{one}.key")) == [
        "sources.p.tls: key_file needs cert_file (the certificate that goes with the key)"
    ]
    assert problems_of(source_tls(cert_file=f"{one}.crt")) == [
        f"sources.p.tls: cert_file {one}.crt: not usable PEM (pem lib) "
        "(without key_file, the cert_file must hold the private key too)"
    ]


def test_otlp_certificates_are_checked_unless_plaintext_grpc_ignores_them(
    certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def otlp(**settings: Any) -> dict[str, Any]:
        return {"sources": {"f": {"type": "file", "path": "/m"}}, "sinks": {"out": {"type": "otlp", **settings}}}

    parse_config(otlp(endpoint="https://127.0.0.1:4318", certificate=str(certificates / "one.crt")))
    parse_config(otlp(protocol="grpc", endpoint="http://127.0.0.1:4317", certificate="/absent.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/absent.key")  # the environment counts like the keys
    assert problems_of(otlp(endpoint="https://127.0.0.1:4318")) == [
        "sinks.out: client_key needs client_certificate (the certificate that goes with the key)"
    ]


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0:9464", None),
        ("[::1]:9464", None),
        (":9464", None),
        ("localhost:9464", None),
        ("metrics.example.com:9464", None),
        ("127.0.0.1:0", None),  # port 0: any free port, the log says which
        ("127.0.0.1:99999", "needs a port 0..65535"),
        ("127.0.0.1", "needs a port 0..65535"),
        ("::1:9464", "write an IPv6 address in brackets"),
        ("[::g]:9464", "'::g' is not an IPv6 address"),
        ("999.1.1.1:9464", "'999.1.1.1' is not an IPv4 address"),
        ("-bad-.example:9464", "is not an IP address or a host name"),
    ],
)
def test_listen_addresses(listen: str, problem: str | None) -> None:
    data = {
        "sources": {"f": {"type": "file", "path": "/m"}},
        "sinks": {"out": {"type": "console"}},
        "telemetry": {"listen": listen},
    }
    if problem is None:
        assert parse_config(data).telemetry.listen == listen
    else:
        (found,) = problems_of(data)
        assert found.startswith("telemetry.listen: ") and problem in found


def test_two_sinks_cannot_share_a_spool(tmp_path: Path) -> None:
    spool = {"spool_path": str(tmp_path / "spool.db")}
    found = problems_of(
        {
            "sources": {"f": {"type": "file", "path": "/m"}},
            "sinks": {
                "a": {"type": "console", "delivery": spool},
                "b": {"type": "console", "delivery": {"spool_path": f"{tmp_path}/./spool.db"}},
            },
        }
    )
    assert found == ["sinks.b.delivery.spool_path: already the spool of sink a (each sink needs its own)"]


# ---------------------------------------------------------------- item 15: a reload that fails changes nothing
PLUGIN = '''
"""Sources a third party might ship: one whose constructor fails, one whose start fails."""
from bridge.schema import SourceConfig
from bridge.sources.base import Source


class DeviceConfig(SourceConfig):
    device: str


class DeviceSource(Source):
    """Reads a local accelerator's counters; the device is opened in the constructor."""
    Config = DeviceConfig

    def __init__(self, name, config, context):
        super().__init__(name, config, context)
        raise OSError(f"cannot open {config.device}: no such device")

    def next_due(self, now):
        return None

    async def collect(self, now):
        return None


class DaemonSource(DeviceSource):
    """Talks to a local daemon; connects at start."""

    def __init__(self, name, config, context):
        Source.__init__(self, name, config, context)

    async def start(self):
        raise ConnectionRefusedError(f"daemon at {self.config.device} refused the connection")
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The plug-in laid out as pip leaves an installed wheel: package + dist-info with entry points."""
    site = tmp_path_factory.mktemp("site")
    (site / "mb_device_sources").mkdir()
    (site / "mb_device_sources" / "__init__.py").write_text(PLUGIN)
    dist = site / "mb_device_sources-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mb-device-sources\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[metrics_bridge.sources]\ndevice = mb_device_sources:DeviceSource\ndaemon = mb_device_sources:DaemonSource\n"
    )
    (dist / "RECORD").write_text("")
    return str(site)


class Bridge:
    """`metrics-bridge run` on a config file, its log in a file; stopped (SIGTERM, then kill) on exit."""

    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        self.config_path = tmp / "bridge.yaml"
        self.log_path = tmp / "bridge.log"
        self.write(config)
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*CLI, "run", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, **env},
        )

    def write(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    def text(self) -> str:
        return self.log_path.read_text()

    def reload(self, config: dict[str, Any]) -> str:
        """Rewrite the config, SIGHUP, and return the reload's log line."""
        self.write(config)
        before = self.text().count("reload")
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: self.text().count("reload") > before, 20, "the reload's answer in the log")
        return next(line for line in self.text().splitlines()[::-1] if "reload" in line)

    def stop(self) -> str:
        try:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=30) == 0
        finally:
            self.process.kill()
            self.process.wait()
            self.log.close()
        return self.text()


@pytest.fixture
def scrape_target() -> Iterator[ExpositionServer]:
    with ExpositionServer() as server:
        server.respond(Response(body="bridge_test_up 1\n"))
        yield server


def scraped(server: ExpositionServer, query: str) -> int:
    return sum(1 for request in server.requests if request.path == f"/metrics{query}")


@pytest.mark.parametrize(
    ("section", "component", "expected"),
    [
        (
            "sources",
            {"gpu": {"type": "device", "device": "/dev/accel9"}},
            "sources.gpu: cannot be built: cannot open /dev/accel9: no such device",
        ),
        (
            "sources",
            {"local": {"type": "daemon", "device": "/run/accel.sock"}},
            "sources.local: cannot start: daemon at /run/accel.sock refused the connection",
        ),
        (
            "sinks",
            {"dd": {"type": "datadog", "url": "{intake}", "api_key": "wrong-key-0001", "validate_api_key": True}},
            "sinks.dd: cannot start: http_403: sink dd: Datadog rejected the API key at {intake}",
        ),
    ],
    ids=["plug-in-constructor", "plug-in-start", "datadog-key-rejected"],
)
def test_a_reload_that_fails_to_build_keeps_the_running_pipeline(
    tmp_path: Path,
    scrape_target: ExpositionServer,
    plugin_path: str,
    section: str,
    component: dict[str, Any],
    expected: str,
) -> None:
    """The changed source (a new URL) must never scrape: before the fix it ran on, next to its predecessor."""
    with DatadogIntake({"right-key-0001"}) as intake:

        def config(query: str) -> dict[str, Any]:
            return {
                "sources": {
                    "target": {
                        "type": "prometheus",
                        "url": f"{scrape_target.url}{query}",
                        "interval_seconds": 1,
                        "offset_seconds": 0,
                    }
                },
                "sinks": {"file": {"type": "jsonl", "path": str(tmp_path / "points.jsonl")}},
            }

        bridge = Bridge(tmp_path, config("?config=1"), {"PYTHONPATH": plugin_path})
        try:
            wait_for(lambda: scraped(scrape_target, "?config=1") >= 2, 20, "the first config scraping")
            changed = config("?config=2")
            changed[section].update(yaml.safe_load(yaml.safe_dump(component).replace("{intake}", intake.url)))
            line = bridge.reload(changed)
            expected = expected.replace("{intake}", intake.url)
            scrapes_at_refusal = scraped(scrape_target, "?config=1")
            wait_for(
                lambda: scraped(scrape_target, "?config=1") >= scrapes_at_refusal + 3, 20, "the old source scraping on"
            )
        finally:
            log = bridge.stop()
    assert line.endswith(f"reload refused, keeping the running config: {expected}")
    assert scraped(scrape_target, "?config=2") == 0, "the changed source scraped: the refused config ran"
    assert "Task exception" not in log and "Traceback" not in log
    assert (tmp_path / "points.jsonl").read_text().count("bridge_test_up") >= 3  # the running sink kept writing


def test_a_sink_that_fails_to_take_over_its_spool_gives_it_back(
    tmp_path: Path, scrape_target: ExpositionServer
) -> None:
    """A changed sink with a spool: the old one hands it over; the new one cannot start; the old config is back."""
    points = tmp_path / "points.jsonl"

    def config(path: Path) -> dict[str, Any]:
        return {
            "sources": {
                "target": {"type": "prometheus", "url": scrape_target.url, "interval_seconds": 1, "offset_seconds": 0}
            },
            "sinks": {
                "file": {"type": "jsonl", "path": str(path), "delivery": {"spool_path": str(tmp_path / "file.db")}}
            },
        }

    bridge = Bridge(tmp_path, config(points), {})
    try:
        wait_for(lambda: points.exists() and points.read_text().count("bridge_test_up") >= 1, 20, "the first points")
        line = bridge.reload(config(tmp_path / "absent-directory" / "points.jsonl"))
        written = points.read_text().count("bridge_test_up")
        wait_for(lambda: points.read_text().count("bridge_test_up") >= written + 2, 20, "points after the refusal")
    finally:
        log = bridge.stop()
    assert line.endswith(
        "reload refused, keeping the running config: sinks.file: cannot start: "
        f"[Errno 2] No such file or directory: '{tmp_path}/absent-directory/points.jsonl'"
    )
    assert "Task exception" not in log and "Traceback" not in log
