"""Warm standby (bridge/ha.py): the Lease client, the standby loop, and two real processes taking over.

No Kubernetes API server can run on the test machines, so everything here talks to
LeaseStandIn (tests/ha_harness.py): a small loopback stand-in for the coordination.k8s.io/v1
Lease endpoints that enforces the API's rules a leader election depends on (its docstring
lists them), reached through the official `kubernetes` client as in a cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio.client import V1Lease, V1ObjectMeta

from bridge import telemetry
from bridge.clock import minute_floor
from bridge.config import ConfigError, load_config
from bridge.context import WindowLedger
from bridge.ha import (
    WINDOWS_ANNOTATION,
    LeaseClient,
    LeaseElector,
    LeaseError,
    Standby,
    format_micro_time,
    micro_time,
)
from bridge.schema import HAConfig
from bridge.simulator import CerebrasSimulator
from tests.conftest import stop_processes, wait_for
from tests.ha_harness import LeaseStandIn, start_replica, windows
from tests.test_otlp_wire import self_signed  # noqa: F401  # a fixture: the certificate made at test time

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def stand_in() -> Iterator[LeaseStandIn]:
    with LeaseStandIn() as server:
        yield server


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    async def sleep_until(self, when: float) -> None:
        self.t = max(self.t, when)


def _sample(name: str, **labels: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name, {"lease": "lease", **labels}) or 0.0


async def _elector(stand_in: LeaseStandIn, identity: str, clock: FakeClock, duration: int = 15) -> LeaseElector:
    config = HAConfig(enabled=True, lease_name="lease", namespace="ns", identity=identity, api_url=stand_in.url)
    return LeaseElector(await LeaseClient.from_config(config), identity, duration, clock)


# ---------------------------------------------------------------- unit: times
def test_micro_time_is_rfc3339_utc_with_six_digits() -> None:
    text = format_micro_time(micro_time(1_800_000_000.25))
    assert MICRO_TIME.match(text), text
    assert text == "2027-01-15T08:00:00.250000Z"
    # A whole second keeps its six digits: datetime.isoformat() would drop them, and the API would answer 400.
    whole = datetime.datetime(2027, 1, 15, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert format_micro_time(whole) == "2027-01-15T08:00:00.000000Z"


# ---------------------------------------------------------------- unit: acquire, renew, expire, 409
def test_acquire_creates_a_missing_lease_and_renew_keeps_it(stand_in: LeaseStandIn) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        a, b = await _elector(stand_in, "pod-a", clock), await _elector(stand_in, "pod-b", clock)
        assert await a.client.get() is None  # 404: not there yet
        assert await a.try_acquire_or_renew()  # POST
        lease = stand_in.leases[("ns", "lease")]
        assert lease["spec"]["holderIdentity"] == "pod-a"
        assert lease["spec"]["leaseDurationSeconds"] == 15
        assert MICRO_TIME.match(lease["spec"]["renewTime"])
        first_renew = lease["spec"]["renewTime"]
        assert not await b.try_acquire_or_renew()  # held and not expired
        assert b.holder == "pod-a"
        clock.t += 5
        assert await a.try_acquire_or_renew({WINDOWS_ANNOTATION: '{"k": 1}'})  # PUT with the rv read
        lease = stand_in.leases[("ns", "lease")]
        assert lease["spec"]["renewTime"] > first_renew
        assert lease["spec"]["leaseTransitions"] == 0
        assert lease["metadata"]["annotations"][WINDOWS_ANNOTATION] == '{"k": 1}'
        clock.t += 14.9  # 14.9 s after the last renew: still held
        assert not await b.try_acquire_or_renew()
        await a.client.close()
        await b.client.close()

    asyncio.run(scenario())


def test_an_expired_lease_is_taken_over_and_the_old_holder_sees_it(stand_in: LeaseStandIn) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        a, b = await _elector(stand_in, "pod-a", clock), await _elector(stand_in, "pod-b", clock)
        assert await a.try_acquire_or_renew()
        clock.t += 15.0  # renewTime + leaseDurationSeconds has passed
        assert await b.try_acquire_or_renew()
        spec = stand_in.leases[("ns", "lease")]["spec"]
        assert spec["holderIdentity"] == "pod-b"
        assert spec["leaseTransitions"] == 1
        assert spec["acquireTime"] == spec["renewTime"]
        assert not await a.try_acquire_or_renew()  # a's next renew: b holds it, not expired
        assert a.holder == "pod-b"
        await a.client.close()
        await b.client.close()

    asyncio.run(scenario())


def test_a_write_with_a_stale_resource_version_answers_409_and_the_loser_backs_off(stand_in: LeaseStandIn) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        a, b = await _elector(stand_in, "pod-a", clock), await _elector(stand_in, "pod-b", clock)
        assert await a.try_acquire_or_renew()
        clock.t += 20.0  # expired: both standbys see it so

        def c_takes_it_first(current: dict[str, Any]) -> None:  # between b's GET and b's PUT
            stand_in.before_put = None
            stand_in.version += 1
            current["metadata"]["resourceVersion"] = str(stand_in.version)
            current["spec"]["holderIdentity"] = "pod-c"
            current["spec"]["renewTime"] = format_micro_time(micro_time(clock.t))

        stand_in.before_put = c_takes_it_first
        conflicts = stand_in.conflicts
        assert not await b.try_acquire_or_renew()  # 409: pod-c won
        assert stand_in.conflicts == conflicts + 1
        assert stand_in.holder() == "pod-c"
        # And a PUT without the current resourceVersion is refused outright.
        stale = await b.client.get()
        assert stale is not None
        assert stale.metadata is not None
        stale.metadata.resource_version = "1"
        assert await b.client.replace(stale) is None
        # Two replicas creating the Lease at once: the second POST answers 409 AlreadyExists.
        assert await b.client.create(V1Lease(kind="Lease", metadata=V1ObjectMeta(name="lease"))) is None
        await a.client.close()
        await b.client.close()

    asyncio.run(scenario())


def test_standby_loads_the_window_ends_from_the_lease_before_starting_sources(stand_in: LeaseStandIn) -> None:
    clock = FakeClock()
    config = HAConfig(enabled=True, lease_name="lease", namespace="ns", identity="pod-b")
    events: list[str] = []

    async def scenario() -> None:
        a = await _elector(stand_in, "pod-a", clock)
        assert await a.try_acquire_or_renew({WINDOWS_ANNOTATION: json.dumps({"cerebras:org": 1_799_999_940.0})})
        ledger = WindowLedger()
        ledger.clock = clock

        async def activate() -> None:
            events.append(f"activate, ledger {ledger.snapshot()}")

        async def deactivate() -> None:
            events.append("deactivate")

        b = await _elector(stand_in, "pod-b", clock)
        standby = Standby(config, b, ledger, activate, deactivate)
        became_active = _sample("bridge_ha_transitions_total", to="active")
        await standby.step(clock.now())
        assert not standby.active and events == []  # a holds it: standby, no sources
        assert _sample("bridge_ha_active") == 0
        clock.t += 16
        await standby.step(clock.now())
        assert standby.active
        assert _sample("bridge_ha_active") == 1
        assert _sample("bridge_ha_transitions_total", to="active") == became_active + 1
        assert events == ["activate, ledger {'cerebras:org': 1799999940.0}"]
        ledger.record("cerebras:org", 1_800_000_000.0)
        await standby.step(clock.now())  # the renew writes the new end into the Lease
        annotations = stand_in.leases[("ns", "lease")]["metadata"]["annotations"]
        assert json.loads(annotations[WINDOWS_ANNOTATION]) == {"cerebras:org": 1_800_000_000.0}
        # a comes back and takes it (say b stalled past the lease): b notices at its next renew and stops.
        clock.t += 16
        assert await a.try_acquire_or_renew()
        await standby.step(clock.now())
        assert not standby.active and events[-1] == "deactivate"
        assert _sample("bridge_ha_active") == 0
        await a.client.close()
        await b.client.close()

    asyncio.run(scenario())


async def _active_later(stand_in: LeaseStandIn, clock: FakeClock) -> tuple[Standby, WindowLedger]:
    """pod-a's Standby loop parts with no sources behind them, still standby: its first step takes the Lease."""
    ledger = WindowLedger()
    ledger.clock = clock

    async def nothing() -> None:
        pass

    config = HAConfig(enabled=True, lease_name="lease", namespace="ns", identity="pod-a")
    return Standby(config, await _elector(stand_in, "pod-a", clock), ledger, nothing, nothing), ledger


def test_a_recorded_window_is_in_the_lease_before_it_is_forwarded(stand_in: LeaseStandIn) -> None:
    """The source awaits ledger.published() between recording a window and forwarding it: a replica
    killed before that write never forwarded the window (the next one fetches it), one killed after
    it left the window in the Lease (the next one skips it). Windows recorded together share a write."""
    clock = FakeClock()

    async def scenario() -> None:
        standby, ledger = await _active_later(stand_in, clock)
        elector = standby.elector
        await ledger.published()  # standby: nothing to write, returns at once
        assert ("ns", "lease") not in stand_in.leases
        await standby.step(clock.now())
        assert standby.active
        ledger.record("cerebras:org", 1_800_000_000.0)
        await ledger.published()
        annotations = stand_in.leases[("ns", "lease")]["metadata"]["annotations"]
        assert json.loads(annotations[WINDOWS_ANNOTATION]) == {"cerebras:org": 1_800_000_000.0}

        writes = stand_in.version

        async def forward(upstream: str) -> None:  # what 20 sources finishing one scrape each do
            ledger.record(upstream, 1_800_000_060.0)
            await ledger.published()

        await asyncio.gather(*(forward(f"cerebras:org{i}") for i in range(20)))
        ends = json.loads(stand_in.leases[("ns", "lease")]["metadata"]["annotations"][WINDOWS_ANNOTATION])
        assert all(ends[f"cerebras:org{i}"] == 1_800_000_060.0 for i in range(20))
        assert stand_in.version - writes <= 2, "20 windows recorded together: one write for the first, one for the rest"
        await elector.client.close()

    asyncio.run(scenario())


def test_a_lease_that_cannot_be_written_does_not_hold_windows_back(
    stand_in: LeaseStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The API server gone: each window is forwarded anyway (the renew loop decides about stepping down),
    counted, and logged once for the bad spell rather than once per window."""
    clock = FakeClock()
    errors = _sample("bridge_ha_lease_errors_total")

    async def scenario() -> None:
        standby, ledger = await _active_later(stand_in, clock)
        elector = standby.elector
        await standby.step(clock.now())
        assert standby.active
        stand_in.stop()  # connection refused from here on
        for minute in range(3):
            ledger.record("cerebras:org", 1_800_000_060.0 + 60 * minute)
            await ledger.published()
        assert standby.active  # stepping down is the renew loop's call, after lease - renew seconds
        await elector.client.close()

    with caplog.at_level(logging.WARNING, logger="bridge.ha"):
        asyncio.run(scenario())
    assert _sample("bridge_ha_lease_errors_total") - errors == 3
    warnings = [r.getMessage() for r in caplog.records if "not written before forwarding" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_ha_config_defaults_from_the_pod_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("sources:\n  demo:\n    type: simulator\nsinks:\n  out:\n    type: console\nha:\n  enabled: true\n")
    monkeypatch.setenv("POD_NAMESPACE", "metrics")
    monkeypatch.setenv("POD_NAME", "metrics-bridge-0-a")
    ha = load_config(str(path)).ha
    assert (ha.namespace, ha.identity, ha.lease_name) == ("metrics", "metrics-bridge-0-a", "metrics-bridge-shard-0")
    assert (ha.lease_duration_seconds, ha.renew_seconds) == (15, 5.0)
    monkeypatch.delenv("POD_NAMESPACE")
    with pytest.raises(ConfigError, match=r"ha\.namespace: not set and \$POD_NAMESPACE is empty"):
        load_config(str(path))
    path.write_text(path.read_text() + "  namespace: metrics\n  renew_seconds: 20\n")
    with pytest.raises(ConfigError, match="renew_seconds must be shorter than lease_duration_seconds"):
        load_config(str(path))
    path.write_text(path.read_text().replace("renew_seconds: 20", "bogus: 1"))
    with pytest.raises(ConfigError, match="bogus"):
        load_config(str(path))


def test_ha_default_lease_name_is_per_release_and_per_shard(tmp_path: Path) -> None:
    """The chart sets lease_prefix to the release's fullname: two releases never share a Lease."""
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "sources:\n  demo:\n    type: simulator\nsinks:\n  out:\n    type: console\n"
        "sharding: {count: 3, index: 2}\nha: {enabled: true, namespace: ns, identity: me, lease_prefix: prod-bridge}\n"
    )
    assert load_config(str(path)).ha.lease_name == "prod-bridge-shard-2"
    path.write_text(path.read_text().replace("prod-bridge", "Prod_Bridge"))
    with pytest.raises(ConfigError, match=r"ha\.lease_prefix"):
        load_config(str(path))


# ---------------------------------------------------------------- two real processes
LEASE_SECONDS = 3
RENEW_SECONDS = 0.5


def test_two_processes_the_standby_takes_over_without_a_doubled_window(stand_in: LeaseStandIn, tmp_path: Path) -> None:
    with CerebrasSimulator(organization_id="org_ha", api_key="sim-key") as sim:
        processes: dict[str, subprocess.Popen[bytes]] = {}
        sinks = {name: tmp_path / f"{name}.jsonl" for name in ("pod-a", "pod-b")}
        try:
            for name in sinks:
                processes[name] = start_replica(name, tmp_path, sim.url, stand_in, LEASE_SECONDS, RENEW_SECONDS)
                if name == "pod-a":  # pod-a first, so it is the one that becomes active
                    wait_for(lambda: stand_in.holder() == "pod-a", 30, "pod-a holding the Lease")

            # The active one fetches the last complete minute at once; the standby sends nothing.
            wait_for(lambda: bool(windows(sinks["pod-a"])), 30, "pod-a forwarding its first window")
            time.sleep(2 * RENEW_SECONDS)  # the renew that carries that window end into the Lease
            if not 3.0 <= time.time() % 60 <= 55.0:  # not while pod-a's next scrape (second 1) may be in flight
                time.sleep((63.0 - time.time() % 60) % 60)
            assert stand_in.holder() == "pod-a"
            assert not windows(sinks["pod-b"])
            # Every request so far was pod-a's, each forwarding one window: the standby costs no budget.
            assert len(sim.requests_received) == len(windows(sinks["pod-a"])), sim.requests_received

            processes["pod-a"].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            processes["pod-a"].wait(timeout=10)
            wait_for(lambda: stand_in.holder() == "pod-b", LEASE_SECONDS + 5, "pod-b taking the Lease")
            takeover = next(t for t, holder in stand_in.history if holder == "pod-b") - killed
            print(f"takeover {takeover:.2f} s after SIGKILL (lease {LEASE_SECONDS} s, poll {RENEW_SECONDS} s)")
            assert takeover <= LEASE_SECONDS + RENEW_SECONDS + 1.0

            # pod-b fetches at once (that minute, if not yet forwarded, else a duplicate it drops),
            # then the next minute: wait for a window later than any pod-a forwarded.
            last_a = max(windows(sinks["pod-a"]))
            next_boundary = minute_floor(time.time()) + 60.0
            wait_for(
                lambda: any(end > last_a for end in windows(sinks["pod-b"])),
                max(0.0, next_boundary - time.time()) + 15,
                "pod-b forwarding a later window",
            )
            assert processes["pod-b"].poll() is None
        finally:
            stop_processes(list(processes.values()))

        a, b = windows(sinks["pod-a"]), windows(sinks["pod-b"])
        both = a + b
        assert all(count == 1 for count in both.values()), f"a window forwarded twice: {both}"
        assert not set(a) & set(b)
        # Every window after the first, forwarded once: no minute missing between the first and the last.
        ends = sorted(both)
        assert ends == list(range(ends[0], ends[-1] + 1, 60 * 10**9)), ends
        # And exactly the windows the simulator served (a duplicate fetch serves a window already counted).
        assert {end // 10**9 - 60 for end in ends} == {int(start) for start in sim.served_windows}


def test_a_released_lease_is_taken_at_the_next_poll(stand_in: LeaseStandIn) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        a, b = await _elector(stand_in, "pod-a", clock), await _elector(stand_in, "pod-b", clock)
        assert await a.try_acquire_or_renew()
        await b.release()  # not the holder: changes nothing
        assert stand_in.holder() == "pod-a"
        await a.release()  # a clean stop
        assert stand_in.holder() is None
        assert await b.try_acquire_or_renew()  # no waiting for the lease duration
        assert stand_in.holder() == "pod-b"
        await a.client.close()
        await b.client.close()

    asyncio.run(scenario())


def test_sources_stop_on_losing_the_lease_and_start_again_on_taking_it_back(tmp_path: Path) -> None:
    from bridge.pipeline import Pipeline

    path = tmp_path / "bridge.yaml"
    sink = tmp_path / "out.jsonl"
    path.write_text(f"sources:\n  demo:\n    type: simulator\nsinks:\n  out:\n    type: jsonl\n    path: {sink}\n")

    async def scenario() -> None:
        pipeline = Pipeline(load_config(str(path)))
        await pipeline.start(sources=False)  # a standby
        assert not pipeline.sources_running
        assert all(entry.task is None for entry in pipeline.sources.values())
        await pipeline.start_sources()  # took the Lease
        first = pipeline.sources["demo"]
        assert first.task is not None
        await pipeline.stop_sources()  # lost it
        assert pipeline.sources["demo"] is not first and pipeline.sources["demo"].task is None
        await pipeline.start_sources()  # took it back: a fresh source that works
        again = pipeline.sources["demo"]
        await pipeline.collect(again)  # None if the first source's task already forwarded this window
        assert again.source.last_success is not None and again.source.last_error is None, "a closed client would fail"
        assert await pipeline.stop(grace=5) == 0

    asyncio.run(scenario())


def test_in_a_pod_the_client_sends_the_service_account_token_over_tls(
    tmp_path: Path,
    self_signed: tuple[str, str],  # noqa: F811
) -> None:
    """As in a pod: $KUBERNETES_SERVICE_HOST/PORT, and the service account's token and CA (the client re-reads
    the token every minute, as the kubelet rotates it). The stand-in serves TLS and wants that token."""
    cert, _ = self_signed
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("sa-token")
    (account / "ca.crt").write_text(Path(cert).read_text())
    config = HAConfig(enabled=True, lease_name="lease", namespace="ns", identity="pod-a")

    async def acquire(environ: dict[str, str]) -> bool:
        client = await LeaseClient.from_config(config, service_account=account, environ=environ)
        try:
            return await LeaseElector(client, "pod-a", 15, FakeClock()).try_acquire_or_renew()
        finally:
            await client.close()

    with LeaseStandIn(tls=self_signed, token="sa-token") as stand_in:
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(stand_in.server_address[1])}
        assert asyncio.run(acquire(environ))
        assert stand_in.holder() == "pod-a"
        assert stand_in.authorizations == {"bearer sa-token"}  # the client's spelling of the scheme
        (account / "token").write_text("revoked")
        stand_in.token = "rotated"
        with pytest.raises(LeaseError, match=r"GET lease ns/lease: HTTP 401 Unauthorized"):
            asyncio.run(acquire(environ))
    with pytest.raises(LeaseError, match=r"neither in a cluster nor a usable kubeconfig"):
        asyncio.run(acquire({"KUBECONFIG": str(tmp_path / "missing")}))


def test_without_the_ha_extra_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubernetes client is the `ha` extra: without it, validate and run say how to install it."""
    for name in [name for name in sys.modules if name.split(".")[0] == "kubernetes"] + ["kubernetes"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: find_spec and import both fail
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "sources:\n  demo:\n    type: simulator\nsinks:\n  out:\n    type: console\n"
        "ha: {enabled: true, namespace: ns, identity: me}\n"
    )
    with pytest.raises(ConfigError, match=re.escape("ha.enabled: needs the kubernetes client, the `ha` extra")):
        load_config(str(path))
    config = HAConfig(enabled=True, lease_name="lease", namespace="ns", identity="me", api_url="http://127.0.0.1:1")
    with pytest.raises(LeaseError, match=re.escape("pip install 'metrics-bridge[ha]'")):
        asyncio.run(LeaseClient.from_config(config))
